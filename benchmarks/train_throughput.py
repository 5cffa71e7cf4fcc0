"""Training throughput: elmjax vs a PyTorch eager OpenELM on the same machine, in one run.

For each model (the quickstart model; an OpenELM-270M-shaped model at reduced sequence
length) it measures one full training step (forward, backward, AdamW update):

- elmjax float32 and bfloat16 compute (jitted, sharded over all local devices);
- PyTorch eager float32 (and bfloat16 autocast) with torch.optim.AdamW, same weights;
- the float32 matmul rate of this machine measured in the same run (the MFU baseline).

Warm-up steps are excluded and the median of several steps is reported; ratios are taken
between measurements interleaved in the same process, because the machine is shared.
Needs PyTorch (``pip install torch==2.13.0``)::

    python benchmarks/train_throughput.py --models quickstart,270m --batch 4 --seq 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

sys.path.insert(0, __file__.rsplit("/", 2)[0])  # the repository root, for benchmarks.torch_reference

from elmjax import config as C  # noqa: E402
from elmjax.model import schedule  # noqa: E402
from elmjax.perf import measured_matmul_flops, median_time  # noqa: E402
from elmjax.presets import config_module  # noqa: E402
from elmjax.train.synthetic import compiled_train_step, random_train_batch  # noqa: E402

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")


def model_config(name: str, batch: int, seq: int):
    preset = "quickstart" if name == "quickstart" else "openelm_270m"
    cfg = config_module(os.path.join(EXPERIMENTS, f"{preset}.py")).get_config()
    cfg.data.seq_len = seq
    cfg.train.global_batch_size = batch
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, -1, 1
    cfg.model.dtype = "float32"  # the reference check compares float32 logits
    return cfg


def torch_matmul_rate(n=1024) -> float:
    import torch

    a = torch.ones(n, n)
    return 2 * n ** 3 / median_time(lambda: a @ a, reps=5, warmup=2)


def jax_step(cfg, dtype: str):
    """(seconds per step, compile seconds) for elmjax at compute ``dtype``."""
    cfg = C.validate(cfg)
    cfg.model.dtype = dtype
    compiled, st, batch, compile_s = compiled_train_step(cfg)
    holder = [st]

    def run():
        holder[0], m = compiled(holder[0], batch)
        return m

    return median_time(run, reps=3, warmup=1), compile_s


def torch_step(cfg, params, batch_np, bf16: bool) -> float:
    import torch

    from benchmarks.torch_reference import OpenELM

    torch.manual_seed(0)
    model = OpenELM(cfg.model).load_elmjax(params)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    inputs = torch.from_numpy(batch_np["inputs"]).long()
    targets = torch.from_numpy(batch_np["targets"]).long()

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return median_time(run, reps=3, warmup=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="quickstart,270m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    jax_peak, torch_peak = measured_matmul_flops(), torch_matmul_rate()
    print(f"machine: {jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"torch {torch.__version__}; f32 matmul: jax {jax_peak / 1e12:.3f} TFLOP/s, "
          f"torch {torch_peak / 1e12:.3f} TFLOP/s", flush=True)
    rows = []
    for name in args.models.split(","):
        cfg = model_config(name, args.batch, args.seq)
        batch = random_train_batch(cfg.model.vocab_size, args.batch, args.seq)
        flops = schedule.flops_per_token(cfg.model, args.seq) * args.batch * args.seq
        params = None
        if not args.no_torch:
            from elmjax.model.openelm import init_params

            params = jax.device_get(init_params(cfg, jax.random.key(0)))
            from benchmarks.torch_reference import check_against_elmjax

            diff = check_against_elmjax(cfg, params, batch["inputs"][:1, :32])
            print(f"{name}: torch reference vs elmjax max |logit diff| {diff:.2e}", flush=True)
        results = {}
        # Interleaved: torch f32, jax f32, jax bf16, torch bf16.
        if params is not None:
            results["torch_f32"] = (torch_step(cfg, params, batch, bf16=False), None)
        results["jax_f32"] = jax_step(cfg, "float32")
        results["jax_bf16"] = jax_step(cfg, "bfloat16")
        if params is not None:
            results["torch_bf16"] = (torch_step(cfg, params, batch, bf16=True), None)
        base = results.get("torch_f32", results["jax_f32"])[0]
        for key, (sec, compile_s) in results.items():
            row = {"model": name, "impl": key, "step_s": sec, "tokens_per_s": args.batch * args.seq / sec,
                   "mfu_vs_measured_f32_matmul": flops / sec / (torch_peak if key.startswith("torch") else jax_peak),
                   "speedup_vs_torch_f32": base / sec, "compile_s": compile_s}
            rows.append(row)
            print(f"{name:10} {key:10} {sec * 1e3:9.1f} ms/step {row['tokens_per_s']:9.1f} tok/s "
                  f"MFU {row['mfu_vs_measured_f32_matmul']:6.1%}  x{row['speedup_vs_torch_f32']:.2f} vs torch f32"
                  + (f"  compile {compile_s:.1f} s" if compile_s else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax_matmul_flops": jax_peak, "torch_matmul_flops": torch_peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
