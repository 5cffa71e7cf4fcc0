"""The training loop: the one place with side effects (files, clocks, signals, logs).

``train(cfg, workdir)`` sets a run up with named functions — mesh, data, state (restored or
fresh), the compiled step — narrating each stage so a hang on a pod is easy to place, then
runs ``batch -> step -> hooks`` until the last step. Logging, progress, profiling,
evaluation, preemption and checkpointing are hooks (``elmjax.train.hooks``). Pretraining,
fine-tuning (``elmjax.train.finetune``) and sweeps run through this same loop; a new kind of
run brings its own data source, objective or hooks, not its own loop.
"""

from __future__ import annotations

import dataclasses
import time

import jax

from elmjax import checkpoint as ckpt_lib
from elmjax import config as config_lib
from elmjax import metrics as metrics_lib
from elmjax import parallel, perf, storage
from elmjax.data import curriculum
from elmjax.model import schedule
from elmjax.train import hooks as hooks_lib
from elmjax.train import optimizer as opt_lib
from elmjax.train import state as state_lib
from elmjax.train import TrainingError  # noqa: F401 - raised by train(), part of its API
from elmjax.train.progress import Progress, narrate
from elmjax.train.step import jit_train_step


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    status: str  # "completed" | "preempted"
    step: int
    first_loss: float | None
    last_loss: float | None
    skipped_steps: int
    workdir: str


def start_mesh(cfg, devices=None):
    """The run's device mesh (on ``devices``, default all), narrated with the platform."""
    devs = jax.devices() if devices is None else list(devices)
    narrate(f"elmjax: {jax.process_count()} process(es), {len(devs)} {devs[0].platform} "
            f"device(s) ({devs[0].device_kind}), jax {jax.__version__}")
    mesh = parallel.make_mesh(cfg, devices)
    narrate(f"mesh {dict(mesh.shape)}")
    parallel.check_batch(cfg, mesh)
    return mesh


def describe_model(cfg) -> tuple[float, float]:
    """Narrates the model and the batch; returns FLOPs per token (causal, and the 6N form)."""
    seq, gbs = cfg.data.seq_len, cfg.train.global_batch_size
    honest, common = (schedule.flops_per_token(cfg.model, seq, causal=c) for c in (True, False))
    narrate(f"model {cfg.model.name}: {schedule.param_count(cfg):,} parameters, {honest:.3g} "
            f"FLOPs/token; global batch {gbs} x {seq} tokens, {cfg.train.steps} steps")
    return honest, common


def compile_step(step_fn, state, batch):
    """``step_fn`` compiled for ``state`` and ``batch``, with the compile time narrated."""
    narrate("compiling the train step")
    t = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    narrate(f"compiled in {time.perf_counter() - t:.1f} s; first step")
    return compiled


def train(cfg, workdir: str, *, init_params=None, trainable=None, data=None, evaluator=None,
          objective=None, devices=None, extra_hooks=()) -> RunResult:
    """Trains ``cfg`` in ``workdir``, resuming from its latest checkpoint if there is one.

    ``init_params``: parameters to start from instead of a random init (fine-tuning; with
    PEFT on, the base the adapters are added to, and the base an adapters-only checkpoint is
    restored onto); ``trainable``: tree of bools, False leaves frozen (PEFT default: the
    adapters); ``data``: a batch source with ``curriculum.TrainData``'s methods (default: the
    pretraining pipeline); ``evaluator``: ``f(step, params) -> {name: value}`` run every
    ``eval.every`` steps and at the end; ``objective``: the loss (``elmjax.train.step``;
    default the LM loss); ``devices``: the devices of the mesh (default all: a sweep gives each
    run its share); ``extra_hooks``: hooks run after the standard ones.
    Returns a ``RunResult``; raises ``TrainingError`` when the run cannot continue.
    """
    started = time.perf_counter()
    cfg = config_lib.resolve_paths(config_lib.validate(cfg))
    workdir = storage.output_path(workdir)
    lead = jax.process_index() == 0
    mesh = start_mesh(cfg, devices)
    flops, flops_6n = describe_model(cfg)
    manager = ckpt_lib.Checkpointer(workdir, cfg)
    manager.check_latest_compatible()
    data = curriculum.TrainData(cfg) if data is None else data
    narrate(f"data: {data.describe()}")
    setup = state_lib.setup(cfg, mesh, trainable)
    for note in setup.notes:
        narrate(note)
    state, start, how = state_lib.restore_or_init(cfg, setup, mesh, manager, data, init_params)
    narrate(how)
    batch_sharding = parallel.batch_sharding(mesh, cfg)
    step_fn = jit_train_step(cfg, setup.tx, setup.shardings, batch_sharding,
                             setup.param_transform, objective)
    peak, peak_source = perf.peak_flops_per_device(cfg)
    narrate(f"MFU against {peak / 1e12:.3g} TFLOP/s per device ({peak_source})")

    run = hooks_lib.Run(cfg, workdir, start, cfg.train.steps, state, data,
                        metrics_lib.MetricsWriter(workdir, enabled=lead),
                        Progress(cfg.train.steps, start, enabled=lead), started=started)
    preemption = hooks_lib.Preemption()
    hooks = hooks_lib.Hooks([*hooks_lib.default_hooks(
        cfg, workdir, manager, preemption, lr_schedule=opt_lib.run_schedule(cfg),
        peak_total=peak * mesh.size, flops_per_token=flops, flops_per_token_6n=flops_6n,
        evaluator=evaluator), *extra_hooks])
    run.flush = lambda: hooks.flush(run)
    step = start
    try:
        with preemption:
            for step in range(start + 1, run.total + 1):
                batch = parallel.global_batch(data.next_batch(step - 1), batch_sharding)
                if step == start + 1:
                    step_fn = compile_step(step_fn, run.state, batch)
                run.state, metrics = step_fn(run.state, batch)
                hooks.after_step(run, step, metrics)
                if run.stop_requested:
                    break
            hooks.finish(run)
    finally:
        run.progress.close()
        data.close()
        manager.close()
        run.writer.close()
    return finish(run, step)


def finish(run, step: int) -> RunResult:
    """Writes the loss curve and narrates how the run ended; returns its ``RunResult``."""
    status = "preempted" if run.stop_requested else "completed"
    if status == "preempted":
        narrate(f"preempted: saved step {step}; rerun the same command to resume")
    if jax.process_index() == 0:
        png = metrics_lib.plot_loss(run.workdir)
        if png:
            narrate(f"loss curve: {png}")
    narrate(f"{status} at step {step}: loss {run.first_loss} -> {run.last_loss}, "
            f"{run.skipped_total} skipped step(s), {time.perf_counter() - run.started:.0f} s")
    return RunResult(status, step, run.first_loss, run.last_loss, run.skipped_total, run.workdir)
