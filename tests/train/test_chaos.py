"""Chaos: a run killed again and again (SIGKILL at seeded moments around its asynchronous
checkpoint saves, one SIGTERM) ends bitwise where an uninterrupted run ends.

The driver watches the workdir: it kills the trainer right before a save is due, while a
save is in flight (Orbax's temporary directory exists) or right after one is committed,
then starts the same command again. Every loss ever logged by the interrupted runs and the
final parameters must equal the uninterrupted run's, and every checkpoint left behind must
be readable.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from elmjax import checkpoint, metrics
from elmjax.train.state import load_params
from tests.train.conftest import ROOT

STEPS, EVERY, KEEP = 160, 8, 3
SEED = 20261201

CONFIG_FILE = f'''
from tests.train.conftest import tiny_run_config

def get_config(arg=None):
    cfg = tiny_run_config(steps={STEPS}, every={EVERY})
    cfg.checkpoint.keep = {KEEP}
    cfg.train.peak_flops = 1e12  # no matmul measurement at every start
    return cfg
'''


def _spawn(config_path, workdir, log):
    # Same 8 virtual CPU devices as the reference run, so results can match bitwise; the
    # restarts share a persistent compilation cache (the same executable, loaded faster).
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(workdir.parent / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, "-m", "elmjax.cli", "train", "--config",
                             str(config_path), "--workdir", str(workdir)], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def _last_step(workdir):
    rows = metrics.read_metrics(workdir)
    return rows[-1]["step"] if rows else 0


def _entries(workdir):
    d = workdir / "checkpoints"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def _wait(proc, log_path, condition, timeout=120):
    """Polls ``condition()`` every few milliseconds; fails if the trainer exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited ({proc.returncode}) early:\n"
                                 f"{log_path.read_text()[-3000:]}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"timed out waiting:\n{log_path.read_text()[-3000:]}")


def _interrupt(proc, workdir, log_path, kind, after_step):
    """Waits for the run to pass ``after_step``, then for the moment ``kind``, and kills it."""
    _wait(proc, log_path, lambda: _last_step(workdir) >= after_step)
    before = _entries(workdir)
    if kind == "before_save":  # a step or two before the next save is due
        _wait(proc, log_path, lambda: _last_step(workdir) % EVERY in (EVERY - 2, EVERY - 1))
    elif kind == "during_save":  # Orbax's temporary directory of an in-flight save exists
        _wait(proc, log_path, lambda: any("tmp" in n for n in _entries(workdir) - before))
    elif kind == "after_save":  # a new step directory has just been committed
        _wait(proc, log_path, lambda: any(n.isdigit() for n in _entries(workdir) - before))
    proc.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
    return proc.wait(timeout=120)


@pytest.mark.slow
def test_repeated_kills_end_bitwise_where_an_uninterrupted_run_ends(tmp_path):
    from elmjax import cli

    config_path = tmp_path / "chaos_config.py"
    config_path.write_text(CONFIG_FILE)
    reference = tmp_path / "reference"
    assert cli.main(["train", "--config", str(config_path), "--workdir", str(reference)]) == 0
    expected = {r["step"]: r["loss"] for r in metrics.read_metrics(reference)}
    assert sorted(expected) == list(range(1, STEPS + 1))

    rng = np.random.default_rng(SEED)
    moments = ["before_save", "during_save", "after_save"]
    kinds = [str(k) for k in [*rng.permutation(moments), *rng.choice(moments, size=2)]]
    kinds.insert(int(rng.integers(1, 6)), "sigterm")  # five SIGKILLs and one SIGTERM
    workdir = tmp_path / "chaos"
    log_path = tmp_path / "chaos.log"
    history = []
    with log_path.open("a") as log:
        for n, kind in enumerate(kinds):
            target = int((n + 1) * STEPS / (len(kinds) + 1) + rng.integers(-EVERY, EVERY))
            proc = _spawn(config_path, workdir, log)
            rc = _interrupt(proc, workdir, log_path, kind, max(target, 1))
            history.append((kind, _last_step(workdir), rc))
            if kind == "sigterm":
                assert rc == 75, history
            else:
                assert rc == -signal.SIGKILL, history
        proc = _spawn(config_path, workdir, log)
        assert proc.wait(timeout=240) == 0, log_path.read_text()[-3000:]
    out = log_path.read_text()
    assert out.count("restored step") == len(kinds), out[-3000:]
    assert "preempted" in out

    # Every loss any of the runs logged is the uninterrupted run's, bit for bit.
    rows = metrics.read_metrics(workdir)
    assert {r["step"] for r in rows} == set(expected)
    wrong = [(r["step"], r["loss"], expected[r["step"]]) for r in rows
             if r["loss"] != expected[r["step"]]]
    assert not wrong, (wrong[:5], history)
    assert len(rows) > STEPS  # steps after a checkpoint were run (and logged) twice

    # The final parameters too.
    _, want = load_params(reference)
    _, got = load_params(workdir)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # No checkpoint left unreadable, no temporary directory left behind.
    listed = checkpoint.list_checkpoints(workdir)
    assert [r["step"] for r in listed][-1] == STEPS and len(listed) <= KEEP
    assert not any(r["damaged"] for r in listed), listed
    assert {p.name for p in (workdir / "checkpoints").iterdir()} == {str(r["step"]) for r in listed}
    for r in listed:
        load_params(workdir, step=r["step"])
    print(json.dumps(history))


def test_a_row_torn_by_a_kill_does_not_break_the_metrics(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo')
    writer = metrics.MetricsWriter(tmp_path)
    writer.write(2, {"loss": 2.25})
    writer.close()
    assert metrics.read_metrics(tmp_path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}]
