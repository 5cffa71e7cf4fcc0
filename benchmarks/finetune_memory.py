"""Memory and step time of full fine-tuning vs LoRA vs DoRA for OpenELM-270M, as ratios.

Run from the repository root::

    python benchmarks/finetune_memory.py [--batch 2] [--seq-len 256] [--steps 3]

One device (the first CPU), the 270M fine-tuning presets as configured (bfloat16 compute),
a fixed batch of random tokens. Full fine-tuning (``openelm_270m_sft``) trains every weight
(float32 parameters, AdamW moments for all of them); LoRA and DoRA use the paper's PEFT settings (r=32, alpha=32,
dropout 0.1 on token embeddings, qkv_proj, out_proj, proj_1, proj_2) with the frozen base in
bfloat16. For each: the train state's size, XLA's compiled memory analysis of the jitted
train step (arguments + outputs - aliased (donated) + temporaries: the step's peak), and
the median wall time of ``--steps`` steps after one warm-up step. Ratios are against full
fine-tuning measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax

from elmjax import config as config_lib
from elmjax import parallel
from elmjax.model import peft, schedule
from elmjax.presets import config_module
from elmjax.train import optimizer as opt_lib
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step
from elmjax.train.synthetic import random_train_batch

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")

GIB = 2 ** 30


def run_config(mode: str, batch: int, seq_len: int):
    """The 270M fine-tuning preset for ``mode`` (full: ``openelm_270m_sft``; lora | dora:
    ``openelm_270m_lora`` / ``_dora``) at a fixed batch, on one device."""
    c = (config_module(os.path.join(EXPERIMENTS, "openelm_270m_sft.py")).get_config() if mode == "full"
         else config_module(os.path.join(EXPERIMENTS, "openelm_270m_lora.py")).peft_preset(mode))
    c.train.global_batch_size, c.data.seq_len = batch, seq_len
    c.train.microbatches = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
    return config_lib.validate(c)


def measure(mode: str, batch: int, seq_len: int, steps: int) -> dict:
    cfg = run_config(mode, batch, seq_len)
    mesh = parallel.make_mesh(cfg, devices=jax.devices()[:1])
    trainable, transform = None, None
    if peft.enabled(cfg):
        trainable = peft.trainable_mask(jax.eval_shape(lambda: state_lib.train_params(cfg, jax.random.key(0))))
        transform = peft.train_transform(cfg)
    tx = opt_lib.make_optimizer(cfg, trainable)
    abstract = state_lib.abstract_state(cfg, tx)
    shardings = state_lib.state_shardings(cfg, mesh, tx, abstract)
    bsh = parallel.batch_sharding(mesh, cfg)
    step = jit_train_step(cfg, tx, shardings, bsh, transform)
    batch_arrays = parallel.global_batch(random_train_batch(cfg.model.vocab_size, batch,
                                                                  seq_len), bsh)
    t = time.perf_counter()
    compiled = step.lower(jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                       abstract, shardings), batch_arrays).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes)
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract))
    trainable_n = (peft.trainable_count(cfg) if peft.enabled(cfg) else schedule.param_count(cfg))
    state, _ = state_lib.init_state(cfg, mesh, tx, jax.random.key(0))
    state, m = compiled(state, batch_arrays)  # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, batch_arrays)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    del state
    return {"mode": mode, "trainable": trainable_n, "state_gib": state_bytes / GIB,
            "temp_gib": mem.temp_size_in_bytes / GIB, "peak_gib": peak / GIB,
            "step_s": statistics.median(times), "compile_s": compile_s, "loss": float(m["loss"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--modes", default="full,lora,dora", help="full first: ratios are against it")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"OpenELM-270M, batch {args.batch} x {args.seq_len} tokens, median of {args.steps} steps")
    rows = []
    for mode in args.modes.split(","):
        rows.append(measure(mode, args.batch, args.seq_len, args.steps))
        print(f"measured {mode}: {rows[-1]}", flush=True)
    full = rows[0]
    print(f"| method | trainable params | train state GiB | step peak GiB (compiled) | "
          f"step temporaries GiB | step time s | memory vs full | step time vs full |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['trainable']:,} | {r['state_gib']:.2f} | {r['peak_gib']:.2f} | "
              f"{r['temp_gib']:.2f} | {r['step_s']:.2f} | {r['peak_gib'] / full['peak_gib']:.2f} | "
              f"{r['step_s'] / full['step_s']:.2f} |")
    print("compile s: " + ", ".join(f"{r['mode']} {r['compile_s']:.0f}" for r in rows))


if __name__ == "__main__":
    main()
