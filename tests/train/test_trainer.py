"""The trainer end to end: metrics, resume after SIGKILL, SIGTERM, damaged checkpoints, meshes."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from elmjax import checkpoint, metrics
from elmjax.train import loop
from elmjax.train.state import load_params
from tests.train.conftest import ROOT, tiny_run_config

CONFIG_FILE = '''
from tests.train.conftest import tiny_run_config

def get_config(arg=None):
    return tiny_run_config(steps={steps}, every={every})
'''


def losses_by_step(workdir):
    """The last logged loss of each step (a resumed run re-logs steps after its checkpoint)."""
    return {r["step"]: r["loss"] for r in metrics.read_metrics(workdir)}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """An uninterrupted in-process run of 6 steps (checkpoints at 3 and 6)."""
    workdir = tmp_path_factory.mktemp("straight")
    result = loop.train(tiny_run_config(steps=6, every=3), str(workdir))
    return workdir, result


def test_run_logs_metrics_and_writes_outputs(straight_run):
    workdir, result = straight_run
    assert result.status == "completed" and result.step == 6
    rows = metrics.read_metrics(workdir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "step_time_s"):
        assert all(key in r for r in rows), key
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in rows)
    assert (workdir / "loss.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
    assert [r["step"] for r in checkpoint.list_checkpoints(workdir)] == [3, 6]


def _spawn(config_path, workdir):
    # Same 8 virtual devices as the in-process reference run, so results can match bitwise.
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "elmjax.cli", "train", "--config", str(config_path),
                             "--workdir", str(workdir)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(proc, workdir, step, timeout=240, checkpoint_step=None):
    """Waits until ``step`` is logged (and, if given, checkpoint ``checkpoint_step`` is committed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(r["step"] >= step for r in metrics.read_metrics(workdir)) and (
                checkpoint_step is None or (workdir / "checkpoints" / str(checkpoint_step)).is_dir()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early:\n{proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("trainer did not reach step %d" % step)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(straight_run, tmp_path):
    reference, _ = straight_run
    config_path = tmp_path / "run_config.py"
    config_path.write_text(CONFIG_FILE.format(steps=6, every=2))
    workdir = tmp_path / "killed"
    proc = _spawn(config_path, workdir)
    # Killed hard after the step-2 checkpoint is committed, while step 4's save may be in flight.
    _wait_for_step(proc, workdir, 4, checkpoint_step=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = _spawn(config_path, workdir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "restored step 2" in out or "restored step 4" in out, out
    assert losses_by_step(workdir) == losses_by_step(reference)  # bitwise, float32 on CPU


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
    config_path = tmp_path / "run_config.py"
    config_path.write_text(CONFIG_FILE.format(steps=400, every=1000))
    workdir = tmp_path / "preempted"
    proc = _spawn(config_path, workdir)
    _wait_for_step(proc, workdir, 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, out
    assert "preempted" in out
    steps = [r["step"] for r in checkpoint.list_checkpoints(workdir)]
    assert len(steps) == 1 and 2 <= steps[0] < 400


def test_damaged_latest_checkpoint_falls_back_to_previous(straight_run, tmp_path):
    import shutil

    src, _ = straight_run
    workdir = tmp_path / "damaged"
    shutil.copytree(src / "checkpoints", workdir / "checkpoints")
    victims = [p for p in (workdir / "checkpoints" / "6" / "state").rglob("*") if p.is_file()
               and p.stat().st_size > 100 and "d" in p.parent.name]
    victims = victims or [p for p in (workdir / "checkpoints" / "6" / "state").rglob("*")
                          if p.is_file() and p.stat().st_size > 100]
    for v in victims:
        v.write_bytes(v.read_bytes()[: v.stat().st_size // 3])
    cfg = tiny_run_config(steps=6, every=3)
    from elmjax import parallel
    from elmjax.data.curriculum import TrainData
    from elmjax.train import optimizer, state

    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    abstract = state.abstract_state(cfg, tx)
    saver = checkpoint.Checkpointer(workdir, cfg)
    restored_state, step = saver.restore_latest(abstract, state.state_shardings(cfg, mesh, tx, abstract),
                                                TrainData(cfg))
    saver.close()
    assert step == 3
    _, params3 = load_params(src, step=3)
    for a, b in zip(jax.tree.leaves(params3), jax.tree.leaves(restored_state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("shape", [(1, 2, 4), (1, 1, 1)])
def test_restore_onto_another_mesh_is_exact(straight_run, shape):
    workdir, _ = straight_run
    cfg = tiny_run_config(steps=6, every=3)
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = shape
    from elmjax import parallel
    from elmjax.train import optimizer, state

    devices = jax.devices()[: int(np.prod(shape))]
    mesh = parallel.make_mesh(cfg, devices=devices)
    tx = optimizer.make_optimizer(cfg)
    abstract = state.abstract_state(cfg, tx)
    shardings = state.state_shardings(cfg, mesh, tx, abstract)
    saver = checkpoint.Checkpointer(workdir, cfg)
    restored, step = saver.restore_latest(abstract, shardings, None)
    saver.close()
    assert step == 6
    leaf = restored["params"]["layers_0"]["ffn"]["proj_1"]["kernel"]
    assert leaf.sharding.mesh.devices.shape == shape
    _, saved = load_params(workdir)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_incompatible_checkpoint_is_refused(straight_run, tmp_path):
    workdir, _ = straight_run
    cfg = tiny_run_config()
    cfg.model.model_dim = 48
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.model_dim"):
        loop.train(cfg, str(workdir))
    cfg = tiny_run_config()
    other_tok = tmp_path / "other.model"
    other_tok.write_bytes(pathlib.Path(cfg.data.tokenizer).read_bytes() + b"\0")
    cfg.data.tokenizer = str(other_tok)
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="tokenizer"):
        loop.train(cfg, str(workdir))


def test_too_many_non_finite_losses_stop_the_run(tmp_path):
    cfg = tiny_run_config(steps=6, every=100)
    cfg.optim.peak_lr = 1e30  # the update explodes, every later loss is non-finite
    cfg.optim.warmup_steps = 0
    cfg.optim.clip_norm = 0.0
    cfg.train.max_nonfinite_in_a_row = 2
    with pytest.raises(loop.TrainingError, match="non-finite losses in a row"):
        loop.train(cfg, str(tmp_path / "nan"))
    rows = metrics.read_metrics(tmp_path / "nan")
    assert rows and rows[-1]["skipped_total"] >= 1


def two_phase_config():
    from elmjax.presets import two_phase_curriculum

    cfg = tiny_run_config(steps=6, every=1)
    cfg.checkpoint.keep = 10
    cfg.data.min_tokens = 64  # the tiny 32-token windows need no 256-token documents
    return two_phase_curriculum(cfg, str(ROOT / "data_mixtures" / "quickstart_phase1.yaml"),
                                str(ROOT / "data_mixtures" / "quickstart_phase2.yaml"),
                                phase2_start=0.5, decay_in_phase2=True)


@pytest.mark.slow
def test_curriculum_resume_before_at_and_after_the_switch(tmp_path):
    import shutil

    straight = tmp_path / "straight"
    loop.train(two_phase_config(), str(straight))
    rows = metrics.read_metrics(straight)
    assert [r["phase"] for r in rows] == ["web"] * 3 + ["refined"] * 3
    reference = losses_by_step(straight)
    for k in (2, 3, 4):  # the switch is at step 3
        workdir = tmp_path / f"resume{k}"
        shutil.copytree(straight / "checkpoints", workdir / "checkpoints")
        for p in (workdir / "checkpoints").iterdir():
            if p.name.isdigit() and int(p.name) > k:
                shutil.rmtree(p)
        result = loop.train(two_phase_config(), str(workdir))
        assert result.step == 6
        resumed = losses_by_step(workdir)
        assert sorted(resumed) == list(range(k + 1, 7))
        assert resumed == {s: reference[s] for s in resumed}, k


def test_evaluation_during_training_matches_a_direct_evaluation(tmp_path):
    from elmjax.eval import harness, scoring
    from elmjax.eval.encoding import open_tokenizer

    cfg = tiny_run_config(steps=4, every=4)
    cfg.eval.every = 2
    cfg.eval.perplexity = str(ROOT / "data_mixtures" / "samples" / "jsonl" / "poems.jsonl")
    cfg.eval.perplexity_docs = 3
    loop.train(cfg, str(tmp_path), evaluator=harness.training_evaluator(cfg))
    evals = [r for r in metrics.read_metrics(tmp_path) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"] + 1.0
    _, params = load_params(tmp_path)
    texts = harness.read_perplexity_texts(cfg.eval.perplexity, 3)["poems.jsonl"]
    direct = harness.text_perplexity(scoring.Scorer(cfg, params, 8, max_length=cfg.data.seq_len),
                                     open_tokenizer(cfg.data.tokenizer), texts)
    assert evals[1]["eval_ppl/poems.jsonl"] == pytest.approx(direct["token_perplexity"], rel=1e-5)


def test_relative_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = loop.train(tiny_run_config(steps=2, every=2), "runs/relative")
    assert result.status == "completed"
    assert [r["step"] for r in checkpoint.list_checkpoints("runs/relative")] == [2]
    cfg, params = load_params("runs/relative")
    assert cfg.model.model_dim == 32 and "token_embeddings" in params
