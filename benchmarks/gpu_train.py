"""Training MFU on one GPU: OpenELM-270M and OpenELM-1.1B at sequence length 2048, bfloat16
compute, cuDNN attention. Prints tokens/s and MFU both ways (causal attention FLOPs halved,
and the common 6N + 12·L·H·Q·T form) against the device's data-sheet peak.

    PYTHONPATH=. python benchmarks/gpu_train.py --models 270m:16,1_1b:8 --steps 5
"""

from __future__ import annotations

import argparse
import os

import jax

from elmjax import config as C
from elmjax.model import schedule
from elmjax.perf import median_time, peak_flops_per_device
from elmjax.presets import config_module
from elmjax.train.synthetic import compiled_train_step

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")


def measure(size: str, batch: int, seq: int, steps: int, attention: str) -> dict:
    cfg = config_module(os.path.join(EXPERIMENTS, f"openelm_{size}.py")).get_config()
    cfg.model.dtype, cfg.model.attention = "bfloat16", attention
    cfg.data.seq_len, cfg.train.global_batch_size = seq, batch
    compiled, st, batch_arrays, compile_s = compiled_train_step(C.validate(cfg))
    holder = {"state": st}

    def run():
        holder["state"], holder["metrics"] = compiled(holder["state"], batch_arrays)
        return holder["metrics"]

    sec = median_time(run, reps=steps, warmup=2)
    peak, src = peak_flops_per_device(cfg)
    tps = batch * seq / sec
    mem = jax.devices()[0].memory_stats() or {}
    return {"model": size, "batch": batch, "seq": seq, "step_s": sec, "tokens_per_s": tps,
            "mfu": tps * schedule.flops_per_token(cfg.model, seq) / (peak * jax.device_count()),
            "mfu_6n": tps * schedule.flops_per_token(cfg.model, seq, causal=False) / (peak * jax.device_count()),
            "compile_s": compile_s, "peak_src": src, "loss": float(holder["metrics"]["loss"]),
            "peak_mem_gib": mem.get("peak_bytes_in_use", 0) / 2 ** 30}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="270m:16,1_1b:8", help="size:batch,...")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--attention", default="cudnn", choices=("cudnn", "xla"))
    args = ap.parse_args(argv)
    print(f"{jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}", flush=True)
    for item in args.models.split(","):
        size, batch = item.split(":")
        r = measure(size, int(batch), args.seq, args.steps, args.attention)
        print(f"OpenELM-{size}: batch {r['batch']} x {r['seq']}, {r['step_s'] * 1e3:.0f} ms/step, "
              f"{r['tokens_per_s']:,.0f} tok/s, MFU {r['mfu']:.1%} (6N+12LHQT: {r['mfu_6n']:.1%}) "
              f"vs {r['peak_src']}; compile {r['compile_s']:.0f} s; peak memory "
              f"{r['peak_mem_gib']:.1f} GiB; loss {r['loss']:.3f}", flush=True)


if __name__ == "__main__":
    main()
