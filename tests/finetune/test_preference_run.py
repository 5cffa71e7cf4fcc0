"""Preference training end to end through ``elmjax finetune``: logged metrics, held-out
reward accuracy, exact resume, export, sharded vs single device, the precomputed reference,
and LoRA with the base as the reference."""

import math
import shutil

import jax
import numpy as np
import pytest

from elmjax import checkpoint, cli, metrics, parallel
from elmjax.data import prefs
from elmjax.interop import hf
from elmjax.model import peft
from elmjax.model.openelm import init_params
from elmjax.presets import preference_config
from elmjax.train import finetune, loop, preference
from elmjax.train import state as state_lib
from tests.finetune.conftest import ROOT
from tests.train.conftest import tiny_run_config

PAIRS = str(ROOT / "data_mixtures" / "samples" / "prefs" / "train.jsonl")
HELDOUT = str(ROOT / "data_mixtures" / "samples" / "prefs" / "heldout.jsonl")
CONFIG_FILE = """
from tests.finetune.test_preference_run import dpo_config

def get_config(arg=None):
    return dpo_config()
"""
# Logged values that depend on the clock or the process, not on the computation.
TIMING = {"tokens_per_s", "mfu", "mfu_6n", "step_time_s", "host_rss_gib", "mem_gib", "peak_mem_gib"}


def dpo_config(steps=8, reference="model"):
    """The 2-layer test model, DPO on the 40 shipped pairs: 8 pairs (16 rows) x 48 tokens."""
    cfg = tiny_run_config(steps=steps, every=4)
    cfg = preference_config(cfg, PAIRS, steps=steps, pairs=8, lr=1e-2, seq_len=48, warmup=1,
                            min_lr_ratio=0.1, beta=0.1, max_prompt_length=32)
    cfg.prefs.reference = reference
    cfg.prefs.eval_files, cfg.eval.every = HELDOUT, 8
    cfg.checkpoint.every = 4
    return cfg


def by_step(workdir):
    """Everything logged at each step (training and evaluation rows; a resumed run's later
    rows win), without the timing columns."""
    out = {}
    for r in metrics.read_metrics(workdir):
        out.setdefault(r["step"], {}).update({k: v for k, v in r.items() if k not in TIMING})
    return out


def heldout_rewards(cfg, policy, reference):
    """(mean reward margin, reward accuracy) of ``policy`` against ``reference`` on the 12
    held-out pairs."""
    cfg = cfg.copy_and_resolve_references()
    cfg.prefs.files = HELDOUT
    (_, batch), = prefs.batches_in_file_order(cfg, 12)
    _, sums = jax.jit(lambda p, r, b: preference.preference_sums(cfg, p, r, b))(policy, reference, batch)
    return float(sums["reward_margin"]) / 12, float(sums["reward_accuracy"]) / 12


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    """A random base in the HF layout, then 8 DPO steps from it with ``elmjax finetune``
    (8 devices; checkpoints at 4 and 8)."""
    root = tmp_path_factory.mktemp("dpo")
    base = jax.device_get(init_params(dpo_config(), jax.random.key(5)))
    hf.save_hf(root / "base_hf", dpo_config(), base)
    (root / "dpo_config.py").write_text(CONFIG_FILE)
    code = cli.main(["finetune", "--config", str(root / "dpo_config.py"), "--init",
                     str(root / "base_hf"), "--workdir", str(root / "dpo")])
    assert code == 0
    return root, base


def test_dpo_logs_its_metrics_and_raises_heldout_reward_accuracy(dpo_run):
    root, base = dpo_run
    rows = by_step(root / "dpo")
    assert sorted(rows) == list(range(1, 9))
    for key in ("loss", "reward_margin", "reward_accuracy", "reward_chosen", "reward_rejected",
                "logp_chosen", "logp_rejected", "kl", "grad_norm", "lr"):
        assert all(key in r for r in rows.values()), key
    # Before any update the policy is the reference: loss log 2, rewards and margins 0.
    np.testing.assert_allclose(rows[1]["loss"], math.log(2), rtol=1e-6)
    assert rows[1]["reward_margin"] == rows[1]["kl"] == rows[1]["reward_accuracy"] == 0.0
    assert rows[8]["loss"] < 0.3 and rows[8]["reward_margin"] > 1.0, rows[8]
    assert any(p.name.startswith("events.out.tfevents") for p in (root / "dpo").iterdir())
    # Pairs it never saw: from margin 0 / accuracy 0 at the start to clearly positive.
    _, policy = state_lib.load_params(root / "dpo")
    assert heldout_rewards(dpo_config(), base, base) == (0.0, 0.0)
    margin, accuracy = heldout_rewards(dpo_config(), policy, base)
    assert margin > 0.5 and accuracy >= 0.75, (margin, accuracy)
    # the run's own held-out evaluation (eval.every) says the same
    np.testing.assert_allclose([rows[8]["heldout_reward_margin"], rows[8]["heldout_reward_accuracy"]],
                               [margin, accuracy], rtol=1e-5)


def test_export_writes_the_policy(dpo_run):
    root, base = dpo_run
    assert cli.main(["export", "--workdir", str(root / "dpo"), "--out", str(root / "hf")]) == 0
    _, exported = hf.load_hf(root / "hf")
    _, policy = state_lib.load_params(root / "dpo")
    for a, b in zip(jax.tree.leaves(exported), jax.tree.leaves(policy)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(jax.tree.leaves(exported)[0]), jax.tree.leaves(base)[0])


def test_resuming_with_another_reference_is_refused(dpo_run):
    root, _ = dpo_run
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="prefs.reference"):
        finetune.finetune(dpo_config(reference="precomputed"), str(root / "dpo"), str(root / "base_hf"))


def test_resume_mid_run_gives_identical_metrics(dpo_run):
    root, _ = dpo_run
    shutil.copytree(root / "dpo", root / "resumed")
    shutil.rmtree(root / "resumed" / "checkpoints" / "8")  # as if stopped after step 4's save
    result = finetune.finetune(dpo_config(), str(root / "resumed"), str(root / "base_hf"))
    assert result.step == 8
    assert by_step(root / "resumed") == by_step(root / "dpo")  # bitwise, float32 on CPU


@pytest.mark.slow
def test_single_device_equals_eight_devices(dpo_run, tmp_path):
    root, _ = dpo_run
    cfg, params = finetune.prepare(dpo_config(), str(root / "base_hf"))
    loop.train(cfg, str(tmp_path / "one"), init_params=params, data=prefs.PrefsData(cfg),
               objective=preference.preference_objective(cfg), devices=jax.devices()[:1])
    one, eight = by_step(tmp_path / "one"), by_step(root / "dpo")
    assert sorted(one) == sorted(eight)
    for step in one:  # the single-device run has no held-out evaluation: its training metrics
        for key, value in one[step].items():
            np.testing.assert_allclose(value, eight[step][key], rtol=2e-4, atol=1e-5, err_msg=f"{step} {key}")


@pytest.mark.slow
def test_precomputed_reference_trains_like_the_frozen_copy(dpo_run, tmp_path):
    root, _ = dpo_run
    result = finetune.finetune(dpo_config(reference="precomputed"), str(tmp_path / "pre"),
                               str(root / "base_hf"))
    assert result.step == 8 and (tmp_path / "pre" / preference.REFERENCE_FILE).exists()
    pre, copy = by_step(tmp_path / "pre"), by_step(root / "dpo")
    np.testing.assert_allclose(pre[1]["loss"], math.log(2), rtol=1e-5)
    assert sum(abs(r.get("reward_margin", 0.0)) > 1e-3 for r in copy.values()) >= 3
    for step in copy:
        # Until the first update with a non-zero learning rate every margin is 0 up to rounding,
        # and the two references come from different programs: the sign of each margin (and so
        # reward_accuracy) is rounding noise then.
        moved = abs(copy[step].get("reward_margin", 1.0)) > 1e-3
        keys = ("loss", "reward_margin", "logp_chosen", "kl") + (("reward_accuracy",) if moved else ())
        for key in keys:
            np.testing.assert_allclose(pre[step][key], copy[step][key], rtol=1e-3, atol=1e-3,
                                       err_msg=f"{step} {key}")


def test_with_lora_the_reference_is_the_base_with_adapters_off(dpo_run):
    root, base = dpo_run
    cfg = dpo_config()
    cfg.peft.method, cfg.peft.rank, cfg.peft.alpha = "lora", 4, 8.0
    cfg, base_params = finetune.prepare(cfg, str(root / "base_hf"))
    setup = state_lib.setup(cfg, parallel.make_mesh(cfg, jax.devices()[:1]))
    params = peft.wrap(cfg, base_params, jax.random.key(1))
    params["adapters"] = jax.tree.map(  # adapters that change the model
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape), params["adapters"])
    batch = next(prefs.make_pair_iterator(cfg, process_index=0, process_count=1))
    objective = preference.preference_objective(cfg)
    _, sums = jax.jit(lambda p, b: objective(setup.param_transform(p, 0), b))(params, batch)
    logps = jax.jit(lambda p, b: preference.sequence_logps(cfg, p, b))
    policy = np.asarray(logps(peft.apply(cfg, params["base"], params["adapters"]), batch))
    reference = np.asarray(logps(base, batch))  # a separate forward of the starting weights
    assert np.abs(policy - reference).max() > 0.1  # the adapters matter
    np.testing.assert_allclose(float(sums["kl"]), np.sum(policy - reference) / 2, rtol=1e-4)
    np.testing.assert_allclose(float(sums["logp_chosen"]), policy[0::2].sum(), rtol=1e-5)
    # No copy: the state is the base and the adapters, the trainable mask the adapters only.
    assert set(setup.abstract["params"]) == {"base", "adapters"}
