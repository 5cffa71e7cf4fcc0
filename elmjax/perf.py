"""Hardware figures and timing: peak FLOP/s per device, measured matmul rate and memory
bandwidth, memory in use, and ``median_time`` (how every benchmark times a call).

MFU is measured tokens/s x FLOPs per token (``elmjax.model.schedule.flops_per_token``)
over the peak of the devices: a data-sheet peak for known accelerators, else (CPUs) a
matmul measured at start-up.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per device, by ``device_kind`` prefix (vendor data sheets).
PEAK_FLOPS = {
    "NVIDIA H200": 989e12, "NVIDIA H100": 989e12, "NVIDIA A100": 312e12,
    "NVIDIA GH200": 989e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5p": 459e12, "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def measured_matmul_flops(dtype=jnp.float32, n: int = 1024, reps: int = 5) -> float:
    """FLOP/s of a square ``n x n`` matmul on device 0, best of ``reps`` (the CPU MFU baseline)."""
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
    """(peak FLOP/s of one device, where the figure comes from) for a run config:
    ``train.peak_flops`` when set, the data sheet for a known device, else a measurement."""
    if cfg.train.get("peak_flops", 0):
        return float(cfg.train.peak_flops), "config train.peak_flops"
    kind = jax.devices()[0].device_kind
    for prefix, flops in PEAK_FLOPS.items():
        if kind.startswith(prefix):
            return flops, f"data sheet ({kind})"
    return measured_matmul_flops(jnp.dtype(cfg.model.dtype)), f"measured {cfg.model.dtype} matmul on {kind}"


def memory_in_use() -> dict:
    """Device memory in use (GiB) where the backend reports it, else the host's peak RSS."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_in_use" in stats:
        return {"mem_gib": stats["bytes_in_use"] / 2 ** 30,
                "peak_mem_gib": stats.get("peak_bytes_in_use", 0) / 2 ** 30}
    return {"host_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def median_time(fn: Callable[[], object], reps: int = 5, warmup: int = 1,
                setup: Callable[[], object] | None = None, reduce=statistics.median) -> float:
    """Median (or ``reduce``) seconds of ``fn(setup())`` (or ``fn()``) over ``reps`` runs.

    ``warmup`` runs (compilation included) come first and are not counted. The result of
    ``fn`` is waited for (``jax.block_until_ready``); ``setup``, if given, builds fresh
    arguments outside the timed region (e.g. a donated state).
    """
    times = []
    for i in range(warmup + reps):
        arg = setup() if setup is not None else None
        if arg is not None:
            jax.block_until_ready(arg)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg) if setup is not None else fn())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return reduce(times)


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 10) -> float:
    """Measured device memory bandwidth in bytes/s: a jitted copy reads and writes ``nbytes``."""
    x = jnp.ones((nbytes // 4,), jnp.float32)
    copy = jax.jit(lambda a: a + 0.0)
    t = median_time(lambda: copy(x), reps, warmup=2)
    return 2 * x.nbytes / t
