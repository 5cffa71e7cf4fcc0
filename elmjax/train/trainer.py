"""The training loop: the one place with side effects (files, clocks, signals, logs).

``train(cfg, workdir)`` narrates start-up (mesh, data, state or restore, compile, first step)
so a hang on a pod is easy to place, then runs pure jitted steps, logging every
``log.every`` steps, checkpointing every ``checkpoint.every`` steps and at the end, and
saving on SIGTERM at the next step boundary.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import signal
import sys
import time

import jax
import jax.numpy as jnp

from elmjax import checkpoint as ckpt_lib
from elmjax import config as config_lib
from elmjax import metrics as metrics_lib
from elmjax import parallel
from elmjax.data import curriculum
from elmjax.model import peft
from elmjax.train import optimizer as opt_lib
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step

# Dense bf16 peak FLOP/s per device, by ``device_kind`` prefix (vendor data sheets).
PEAK_FLOPS = {
    "NVIDIA H200": 989e12, "NVIDIA H100": 989e12, "NVIDIA A100": 312e12,
    "NVIDIA GH200": 989e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5p": 459e12, "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


class TrainingError(RuntimeError):
    """The run cannot continue (e.g. too many non-finite losses in a row)."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    status: str  # "completed" | "preempted"
    step: int
    first_loss: float | None
    last_loss: float | None
    skipped_steps: int
    workdir: str


def narrate(msg: str) -> None:
    """A start-up note on process 0, flushed at once (easy to place a hang on a pod)."""
    if jax.process_index() == 0:
        print(f"[elmjax {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measured_matmul_flops(dtype=jnp.float32, n: int = 1024, reps: int = 5) -> float:
    """FLOP/s of a square matmul on device 0, measured now (the CPU MFU baseline)."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def peak_flops_per_device(cfg) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    if cfg.train.get("peak_flops", 0):
        return float(cfg.train.peak_flops), "config train.peak_flops"
    kind = jax.devices()[0].device_kind
    for prefix, flops in PEAK_FLOPS.items():
        if kind.startswith(prefix):
            return flops, f"data sheet ({kind})"
    return measured_matmul_flops(jnp.dtype(cfg.model.dtype)), f"measured {cfg.model.dtype} matmul on {kind}"


def memory_in_use() -> dict:
    """Device memory in use (bytes) where the backend reports it, else host peak RSS."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_in_use" in stats:
        return {"mem_gib": stats["bytes_in_use"] / 2 ** 30,
                "peak_mem_gib": stats.get("peak_bytes_in_use", 0) / 2 ** 30}
    return {"host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


class _Preemption:
    """Records SIGTERM so the loop can save at the next step boundary."""

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


def train(cfg, workdir: str, *, init_params=None, trainable=None, data=None,
          evaluator=None) -> RunResult:
    """Trains ``cfg`` in ``workdir``, resuming from its latest checkpoint if there is one.

    ``init_params``: optional parameter tree to start from instead of a random init
    (fine-tuning; with PEFT on, the base, whose adapters are then initialised, and the base
    an adapters-only checkpoint is restored onto); ``trainable``: optional tree of bools,
    False leaves frozen (with PEFT on, by default every adapter and no base weight);
    ``data``: optional batch source with ``curriculum.TrainData``'s methods (e.g.
    ``elmjax.data.sft.SFTData``) instead of the pretraining pipeline;
    ``evaluator``: optional ``f(step, params) -> {name: value}`` run every ``eval.every``
    steps and at the end, its results logged with the training metrics.
    Returns a ``RunResult``; raises ``TrainingError`` when the run cannot continue.
    """
    config_lib.validate(cfg)
    t0 = time.perf_counter()
    lead = jax.process_index() == 0
    narrate(f"elmjax: {jax.process_count()} process(es), {jax.device_count()} "
            f"{jax.devices()[0].platform} device(s) ({jax.devices()[0].device_kind}), jax {jax.__version__}")

    mesh = parallel.make_mesh(cfg)
    narrate(f"mesh {dict(mesh.shape)}")
    n_params = config_lib.param_count(cfg)
    seq, gbs = cfg.data.seq_len, cfg.train.global_batch_size
    flops_tok, flops_tok_6n = (config_lib.flops_per_token(cfg.model, seq, causal=c) for c in (True, False))
    narrate(f"model {cfg.model.name}: {n_params:,} parameters, {flops_tok:.3g} FLOPs/token; "
            f"global batch {gbs} x {seq} tokens, {cfg.train.steps} steps")

    manager = ckpt_lib.Checkpointer(workdir, cfg)
    manager.check_latest_compatible()
    data = curriculum.TrainData(cfg) if data is None else data
    narrate(f"data: {data.describe()}")

    param_transform = None
    if peft.enabled(cfg):
        param_transform = peft.train_transform(cfg)
        if trainable is None:
            trainable = peft.trainable_mask(jax.eval_shape(
                lambda: state_lib.train_params(cfg, jax.random.key(0))))
        n_train = peft.trainable_count(cfg)
        narrate(f"peft {cfg.peft.method}: rank {cfg.peft.rank} on {', '.join(peft.targets_of(cfg))}; "
                f"{n_train:,} trainable parameters ({n_train / n_params:.3%}), base in "
                f"{cfg.peft.base_dtype}")
    tx = opt_lib.make_optimizer(cfg, trainable)
    abstract = state_lib.abstract_state(cfg, tx)
    shardings = state_lib.state_shardings(cfg, mesh, tx, abstract)
    if peft.adapters_only(cfg) and manager.steps() and init_params is None:
        raise TrainingError(f"{manager.directory} holds adapters only (checkpoint.adapters_only): "
                            "give the base weights (elmjax finetune --init) to resume")
    restored = manager.restore_latest(state_lib.checkpointed(cfg, abstract),
                                      state_lib.checkpointed(cfg, shardings), data)
    if restored is not None:
        state, start = restored
        if peft.adapters_only(cfg):
            base = init_params["base"] if "adapters" in init_params else init_params
            base = jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(cfg.peft.base_dtype)), base)
            state["params"] = {"base": jax.device_put(base, shardings["params"]["base"]),
                               **state["params"]}
        narrate(f"restored step {start} from {manager.directory}")
    else:
        state, _ = state_lib.init_state(cfg, mesh, tx, jax.random.key(cfg.train.seed), init_params)
        start = 0
        narrate("initialised a fresh state" + (" from given parameters" if init_params is not None else ""))

    batch_sh = parallel.batch_sharding(mesh, cfg)
    step_fn = jit_train_step(cfg, tx, shardings, batch_sh, param_transform)
    peak, peak_src = peak_flops_per_device(cfg)
    peak_total = peak * jax.device_count()
    narrate(f"MFU against {peak / 1e12:.3g} TFLOP/s per device ({peak_src})")

    writer = metrics_lib.MetricsWriter(workdir, enabled=lead)
    bar = metrics_lib.progress_bar(cfg.train.steps, start, enabled=lead)
    first_loss = last_loss = None
    skipped_total, skipped_streak = 0, 0
    pending = None  # (step, metrics on device, phase) of the previous step, fetched one step late
    window_t, window_steps = time.perf_counter(), 0
    status = "completed"
    step = start

    def drain(pending):
        """Fetches and logs a step's metrics (one step late, so the device stays busy);
        returns None, the new value of ``pending``."""
        nonlocal first_loss, last_loss, skipped_total, skipped_streak, window_t, window_steps
        if pending is None:
            return None
        s, m, phase = pending
        m = jax.device_get(m)
        if m["skipped"]:
            skipped_total += 1
            skipped_streak += 1
            narrate(f"step {s}: non-finite loss ({float(m['loss'])}), update skipped "
                    f"({skipped_streak} in a row, {skipped_total} in all)")
            if skipped_streak >= cfg.train.max_nonfinite_in_a_row:
                raise TrainingError(
                    f"{skipped_streak} non-finite losses in a row (train.max_nonfinite_in_a_row="
                    f"{cfg.train.max_nonfinite_in_a_row}); stopping at step {s}. Lower the "
                    f"learning rate or check the data; the last checkpoint is intact.")
        else:
            skipped_streak = 0
            last_loss = float(m["loss"])
            first_loss = last_loss if first_loss is None else first_loss
        if s % cfg.log.every == 0 or s == cfg.train.steps:
            now = time.perf_counter()
            dt = (now - window_t) / max(window_steps, 1)
            window_t, window_steps = now, 0
            tps = gbs * seq / dt
            row = {"loss": float(m["loss"]), "ce_loss": float(m["ce_loss"]),
                   "lr": float(lr_schedule(s - 1)), "grad_norm": float(m["grad_norm"]),
                   "tokens_per_s": tps, "mfu": tps * flops_tok / peak_total,
                   "mfu_6n": tps * flops_tok_6n / peak_total, "step_time_s": dt,
                   "skipped_total": skipped_total, **memory_in_use()}
            if phase is not None:
                row["phase"] = phase
            writer.write(s, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tps:.3g}", mfu=f"{row['mfu']:.1%}",
                            **({"phase": phase} if phase else {}))

    lr_schedule = opt_lib.run_schedule(cfg)
    try:
        with _Preemption() as preempt:
            while step < cfg.train.steps:
                phase = data.phase_name(step)
                local = data.next_batch(step)
                batch = parallel.global_batch(local, batch_sh)
                if step == start:
                    narrate("compiling the train step")
                    tc = time.perf_counter()
                    compiled = step_fn.lower(state, batch).compile()
                    narrate(f"compiled in {time.perf_counter() - tc:.1f} s; first step")
                    state, m = compiled(state, batch)
                    jax.block_until_ready(m)
                    narrate(f"first step done ({time.perf_counter() - t0:.1f} s after start)")
                    window_t = time.perf_counter()
                    step_fn = compiled
                else:
                    state, m = step_fn(state, batch)
                step += 1
                window_steps += 1
                drain(pending)
                pending = (step, m, phase)
                bar.update(1)
                eval_every = cfg.get("eval", {}).get("every", 0) if evaluator else 0
                if eval_every and (step % eval_every == 0 or step == cfg.train.steps):
                    pending = drain(pending)
                    te = time.perf_counter()
                    params = state["params"]
                    if peft.enabled(cfg):  # evaluate the adapted model
                        params = peft.apply(cfg, params["base"], params["adapters"])
                    results = evaluator(step, params)
                    writer.write(step, results)
                    window_t += time.perf_counter() - te  # evaluation is not training time
                    bar.write(f"step {step} eval: " + ", ".join(
                        f"{k}={v:.4g}" for k, v in results.items() if "stderr" not in k))
                stop = preempt.requested or manager.reached_preemption(step)
                if step % cfg.checkpoint.every == 0 or step == cfg.train.steps or stop:
                    pending = drain(pending)
                    manager.save(step, state_lib.checkpointed(cfg, state), data,
                                 force=stop or step == cfg.train.steps)
                if stop:
                    status = "preempted"
                    narrate(f"preempted: saved step {step}; rerun the same command to resume")
                    break
            drain(pending)
    finally:
        bar.close()
        data.close()
        manager.close()
        writer.close()
    if lead:
        png = metrics_lib.plot_loss(workdir)
        if png:
            narrate(f"loss curve: {png}")
    narrate(f"{status} at step {step}: loss {first_loss} -> {last_loss}, "
            f"{skipped_total} skipped step(s), {time.perf_counter() - t0:.0f} s")
    return RunResult(status, step, first_loss, last_loss, skipped_total, str(workdir))
