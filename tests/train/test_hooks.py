"""The loop's hooks: the ``every`` helper, the order hooks run in, and what each has done by then."""

import io
import sys

import pytest

from elmjax import metrics as metrics_lib
from elmjax.train import hooks, loop, progress
from tests.train.conftest import tiny_run_config


@pytest.mark.parametrize("step,n,total,due", [
    (3, 3, 10, True), (6, 3, 10, True), (4, 3, 10, False),
    (10, 3, 10, True),   # the last step always counts
    (10, 3, None, False),
    (5, 0, 5, False), (5, -1, 5, False),  # n <= 0: never, not even at the end
    (1, 1, 100, True),
])
def test_every(step, n, total, due):
    assert hooks.every(step, n, total) is due


class Recorder(hooks.Hook):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def after_step(self, run, step, metrics):
        self.log.append((self.name, "after_step", step))

    def flush(self, run):
        self.log.append((self.name, "flush"))

    def finish(self, run):
        self.log.append((self.name, "finish"))


def test_hooks_run_in_list_order():
    log = []
    hs = hooks.Hooks([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    hs.after_step(None, 1, {})
    hs.flush(None)
    hs.finish(None)
    assert log == [("a", "after_step", 1), ("b", "after_step", 1), ("c", "after_step", 1),
                   ("a", "flush"), ("b", "flush"), ("c", "flush"),
                   ("a", "finish"), ("b", "finish"), ("c", "finish")]


def test_default_hook_order():
    cfg = tiny_run_config()
    order = [type(h) for h in hooks.default_hooks(
        cfg, "/tmp/unused", manager=None, preemption=hooks.Preemption(), lr_schedule=None,
        peak_total=1.0, flops_per_token=1.0, flops_per_token_6n=1.0, evaluator=lambda s, p: {})]
    assert order == [hooks.MetricsHook, hooks.ProgressHook, hooks.ProfileHook, hooks.EvalHook,
                     hooks.PreemptionHook, hooks.CheckpointHook]


class StateProbe(hooks.Hook):
    """Runs after the standard hooks: records what they had done when it was called."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.seen = {}

    def after_step(self, run, step, metrics):
        logged = [r["step"] for r in metrics_lib.read_metrics(self.workdir) if "loss" in r]
        evals = [r["step"] for r in metrics_lib.read_metrics(self.workdir) if "probe_eval" in r]
        self.seen[step] = (max(logged, default=0), max(evals, default=0),
                           run.state["step"].item(), self.workdir)


def test_hooks_have_acted_in_order_when_a_later_hook_runs(tmp_path):
    cfg = tiny_run_config(steps=4, every=2)
    cfg.eval.every = 3
    cfg.log.profile_start, cfg.log.profile_steps = 1, 2  # traces steps 2 and 3
    probe = StateProbe(str(tmp_path))
    result = loop.train(cfg, str(tmp_path), evaluator=lambda step, params: {"probe_eval": step},
                        extra_hooks=[probe])
    assert result.status == "completed" and result.step == 4
    # Metrics are fetched one step late, except where an evaluation (step 3) or a checkpoint
    # (steps 2 and 4) flushed them first; evaluations (steps 3 and 4, the last) are written
    # before later hooks run.
    assert {s: v[:3] for s, v in probe.seen.items()} == {
        1: (0, 0, 1), 2: (2, 0, 2), 3: (3, 3, 3), 4: (4, 4, 4)}
    assert [r["step"] for r in metrics_lib.read_metrics(tmp_path) if "loss" in r] == [1, 2, 3, 4]
    assert list((tmp_path / "profile").rglob("*.xplane.pb")), "the profile hook wrote no trace"


def test_narration_is_written_above_the_bar(monkeypatch):
    # tqdm.write prints through the bar's lock, clearing and redrawing the bar around the line.
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress.Progress(10, 0, bar=True)
    bar.advance(1)
    progress.narrate("compiling the train step")
    bar.close()
    assert out.getvalue().endswith("compiling the train step\n")
    assert "compiling" not in err.getvalue()


def test_without_a_terminal_each_log_step_is_one_plain_line(capsys):
    p = progress.Progress(10, 0, bar=False)
    p.advance(1)
    p.report(1, {"loss": "4.200"})
    p.close()
    assert capsys.readouterr().out == "[elmjax] step 1/10 loss=4.200\n"
