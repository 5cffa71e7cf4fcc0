"""What happens between train steps: logging, progress, profiling, evaluation, preemption and
checkpointing, as hooks the loop calls after every step, in order.

A hook is an object with ``after_step(run, step, metrics)`` (``step`` counts completed steps,
1-based; ``metrics`` is the step's metrics dict, still on device) and ``finish(run)`` (after
the last step, in the same order); ``flush(run)`` settles work a hook defers (the metrics of
a step are fetched one step late so the device stays busy, and flushed before an evaluation
or a save). When a hook acts is decided by one helper, :func:`every`.

The default order (:func:`default_hooks`) is: metrics (logging), progress, profile,
evaluation, preemption, checkpoint — so a checkpoint at step N is written after step N's
metrics are logged and its evaluation done, and a preemption request seen at step N is saved
at step N.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time
from typing import Callable

import jax

from elmjax import perf
from elmjax.train import TrainingError
from elmjax.train import state as state_lib
from elmjax.train.progress import Progress, narrate


def every(step: int, n: int, total: int | None = None) -> bool:
    """True when a periodic action is due after ``step``: every ``n``-th step and at the last
    step ``total``; never when ``n <= 0``."""
    return n > 0 and (step % n == 0 or step == total)


class Clock:
    """Wall time of training alone: time spent inside :meth:`paused` (evaluation) is left out."""

    def __init__(self):
        self._mark = time.perf_counter()
        self._paused = 0.0

    def lap(self) -> float:
        """Training seconds since the previous lap (or the start); starts a new lap."""
        now = time.perf_counter()
        elapsed = now - self._mark - self._paused
        self._mark, self._paused = now, 0.0
        return elapsed

    @contextlib.contextmanager
    def paused(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - t


@dataclasses.dataclass
class Run:
    """The mutable side of a run that hooks read and update."""

    cfg: object
    workdir: str
    start: int
    total: int
    state: dict
    data: object
    writer: object
    progress: Progress
    started: float = dataclasses.field(default_factory=time.perf_counter)  # process start-up
    clock: Clock = dataclasses.field(default_factory=Clock)
    flush: Callable[[], None] = lambda: None  # settles every hook's deferred work
    stop_requested: bool = False  # a preemption asks to save and stop at this step
    first_loss: float | None = None
    last_loss: float | None = None
    skipped_total: int = 0


class Hook:
    """Base class: every method does nothing."""

    def after_step(self, run: Run, step: int, metrics: dict) -> None:
        pass

    def flush(self, run: Run) -> None:
        pass

    def finish(self, run: Run) -> None:
        pass


class Hooks:
    """An ordered list of hooks, called in order."""

    def __init__(self, hooks):
        self.hooks = list(hooks)

    def after_step(self, run, step, metrics):
        for h in self.hooks:
            h.after_step(run, step, metrics)

    def flush(self, run):
        for h in self.hooks:
            h.flush(run)

    def finish(self, run):
        for h in self.hooks:
            h.finish(run)


class MetricsHook(Hook):
    """Logs every ``log.every`` steps (and the last): the step's metrics, learning rate,
    tokens/s, MFU both ways, step time, skipped steps, memory. Metrics are fetched one step
    late. Counts non-finite steps and stops the run (``TrainingError``) after
    ``train.max_nonfinite_in_a_row`` in a row."""

    def __init__(self, cfg, lr_schedule, tokens_per_step: int, flops_per_token: float,
                 flops_per_token_6n: float, peak_total: float):
        self.every = int(cfg.log.every)
        self.max_streak = int(cfg.train.max_nonfinite_in_a_row)
        self.lr = lr_schedule
        self.tokens = tokens_per_step
        self.flops, self.flops_6n, self.peak = flops_per_token, flops_per_token_6n, peak_total
        self.pending = None
        self.streak = 0
        self.window_steps = 0

    def after_step(self, run, step, metrics):
        if step == run.start + 1:  # the first step of this process: the compile is behind us
            jax.block_until_ready(metrics)
            narrate(f"first step done ({time.perf_counter() - run.started:.1f} s after start)")
            run.clock.lap()
        self.window_steps += 1
        self.flush(run)
        self.pending = (step, metrics, run.data.phase_name(step - 1))

    def flush(self, run):
        if self.pending is None:
            return
        step, m, phase = self.pending
        self.pending = None
        m = jax.device_get(m)
        if m["skipped"]:
            run.skipped_total += 1
            self.streak += 1
            narrate(f"step {step}: non-finite loss ({float(m['loss'])}), update skipped "
                    f"({self.streak} in a row, {run.skipped_total} in all)")
            if self.streak >= self.max_streak:
                self._log(run, step, m, phase)
                raise TrainingError(
                    f"{self.streak} non-finite losses in a row (train.max_nonfinite_in_a_row="
                    f"{self.max_streak}); stopping at step {step}. Lower the learning rate or "
                    f"check the data; the last checkpoint is intact.")
        else:
            self.streak = 0
            run.last_loss = float(m["loss"])
            run.first_loss = run.last_loss if run.first_loss is None else run.first_loss
        if every(step, self.every, run.total):
            self._log(run, step, m, phase)

    def _log(self, run, step, m, phase):
        dt = run.clock.lap() / max(self.window_steps, 1)
        self.window_steps = 0
        tps = self.tokens / dt
        row = {k: float(v) for k, v in m.items() if k != "skipped"}
        row.update({"lr": float(self.lr(step - 1)), "tokens_per_s": tps,
                    "mfu": tps * self.flops / self.peak, "mfu_6n": tps * self.flops_6n / self.peak,
                    "step_time_s": dt, "skipped_total": run.skipped_total, **perf.memory_in_use()})
        if phase is not None:
            row["phase"] = phase
        run.writer.write(step, row)
        shown = {"loss": f"{row['loss']:.3f}", "tok_s": f"{tps:.3g}", "mfu": f"{row['mfu']:.1%}"}
        run.progress.report(step, {**shown, **({"phase": phase} if phase else {})})

    def finish(self, run):
        self.flush(run)


class ProgressHook(Hook):
    """Moves the progress bar one step."""

    def after_step(self, run, step, metrics):
        run.progress.advance(1)


class ProfileHook(Hook):
    """Traces ``log.profile_steps`` steps from step ``log.profile_start`` with ``jax.profiler``
    into ``WORKDIR/profile`` (TensorBoard's profile plugin or Perfetto read it)."""

    def __init__(self, cfg, workdir):
        self.start = int(cfg.log.get("profile_start", 0))
        self.steps = int(cfg.log.get("profile_steps", 0))
        self.dir = f"{workdir}/profile"
        self.active = False

    def after_step(self, run, step, metrics):
        if self.steps <= 0:
            return
        if step == self.start and not self.active:
            jax.profiler.start_trace(self.dir)
            self.active = True
        elif self.active and step >= self.start + self.steps:
            self._stop(run, metrics)

    def _stop(self, run, metrics):
        jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        self.active = False
        narrate(f"profile of {self.steps} step(s) written to {self.dir}")

    def finish(self, run):
        if self.active:
            self._stop(run, None)


class EvalHook(Hook):
    """Runs ``evaluator(step, model_params) -> {name: value}`` every ``eval.every`` steps and
    at the end; the results go to the metrics files and a line above the bar. Evaluation time
    is not counted as training time."""

    def __init__(self, cfg, evaluator):
        self.cfg = cfg
        self.evaluator = evaluator
        self.every = int(cfg.get("eval", {}).get("every", 0))

    def after_step(self, run, step, metrics):
        if not every(step, self.every, run.total):
            return
        run.flush()
        with run.clock.paused():
            results = self.evaluator(step, state_lib.model_params(self.cfg, run.state["params"]))
            run.writer.write(step, results)
        run.progress.write(f"step {step} eval: " + ", ".join(
            f"{k}={v:.4g}" for k, v in results.items() if "stderr" not in k))


class Preemption:
    """Records SIGTERM (a context manager around the loop) so the run can save and stop at the
    next step boundary."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.requested = True
        print("[elmjax] SIGTERM received: saving at the next step boundary", file=sys.stderr,
              flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class PreemptionHook(Hook):
    """Asks the run to stop (after saving) on SIGTERM or at JAX's multi-host preemption sync
    point."""

    def __init__(self, preemption: Preemption, manager):
        self.preemption = preemption
        self.manager = manager

    def after_step(self, run, step, metrics):
        if self.preemption.requested or self.manager.reached_preemption(step):
            run.stop_requested = True


class CheckpointHook(Hook):
    """Saves the state and the data position every ``checkpoint.every`` steps, at the last
    step, and when a stop is requested (asynchronously; forced at the end and on a stop)."""

    def __init__(self, cfg, manager):
        self.cfg = cfg
        self.manager = manager
        self.every = int(cfg.checkpoint.every)

    def after_step(self, run, step, metrics):
        if not (every(step, self.every, run.total) or run.stop_requested):
            return
        run.flush()
        run.writer.sync()  # the rows up to a checkpoint outlive a kill, in a bucket too
        self.manager.save(step, state_lib.checkpointed(self.cfg, run.state), run.data,
                          force=run.stop_requested or step == run.total)


def default_hooks(cfg, workdir, manager, preemption, *, lr_schedule, peak_total,
                  flops_per_token, flops_per_token_6n, evaluator=None) -> list[Hook]:
    """The standard hooks of a training run, in the order they run (see the module docstring)."""
    tokens = cfg.train.global_batch_size * cfg.data.seq_len
    hooks = [MetricsHook(cfg, lr_schedule, tokens, flops_per_token, flops_per_token_6n, peak_total),
             ProgressHook(), ProfileHook(cfg, workdir)]
    if evaluator is not None:
        hooks.append(EvalHook(cfg, evaluator))
    return hooks + [PreemptionHook(preemption, manager), CheckpointHook(cfg, manager)]
