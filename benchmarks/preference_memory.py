"""Memory and step time of preference training (DPO) vs supervised fine-tuning on OpenELM-270M.

Run from the repository root::

    python benchmarks/preference_memory.py [--rows 2] [--seq-len 256] [--steps 2]

One device (the first CPU), the 270M presets as configured (bfloat16 compute), the same
batch for every method: ``--rows`` sequences of ``--seq-len`` random tokens (for DPO that is
``rows / 2`` pairs, chosen and rejected interleaved — the same tokens per step as SFT).

- ``sft``: supervised fine-tuning of every weight (``openelm_270m_sft``);
- ``dpo``: DPO of every weight with the reference as a frozen copy in the train state
  (``openelm_270m_dpo``: one more forward per step, one more copy of the weights, no
  optimizer state for it);
- ``dpo-pre``: DPO with the reference log-probabilities precomputed (they come with the batch);
- ``sft-lora``, ``dpo-lora``, ``dpo-lora-pre``: the same with the paper's LoRA (r=32 on
  token embeddings, qkv_proj, out_proj, proj_1, proj_2; base in bfloat16); ``dpo-lora``'s
  reference is the base with the adapters off.

For each: the train state's size, XLA's compiled memory analysis of the jitted train step
(arguments + outputs - aliased (donated) + temporaries: the step's peak), XLA's compiled
cost analysis (FLOPs of one step: exact where wall time is noisy), and the median wall time of ``--steps`` steps after one warm-up step. Ratios are against ``sft`` (and
``sft-lora`` for the LoRA rows) measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import numpy as np

from elmjax import config as config_lib
from elmjax import parallel
from elmjax.presets import config_module
from elmjax.train import preference
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step
from elmjax.train.synthetic import random_train_batch

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")
GIB = 2 ** 30
MODES = ("sft", "dpo", "dpo-pre", "sft-lora", "dpo-lora", "dpo-lora-pre")


def preset(name):
    return config_module(os.path.join(EXPERIMENTS, f"{name}.py"))


def run_config(mode: str, rows: int, seq_len: int):
    """The 270M preset for ``mode`` (see the module docstring) at a fixed batch, on one device."""
    c = preset("openelm_270m_sft" if mode.startswith("sft") else "openelm_270m_dpo").get_config()
    if "lora" in mode:
        c.peft = preset("openelm_270m_lora").peft_preset("lora").peft
    if mode.endswith("-pre"):
        c.prefs.reference = "precomputed"
    if "prefs" in c:
        c.prefs.max_prompt_length = seq_len // 2
    c.train.global_batch_size, c.data.seq_len = rows, seq_len
    c.train.microbatches = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
    return config_lib.validate(c)


def measure(mode: str, rows: int, seq_len: int, steps: int) -> dict:
    cfg = run_config(mode, rows, seq_len)
    mesh = parallel.make_mesh(cfg, devices=jax.devices()[:1])
    setup = state_lib.setup(cfg, mesh)
    bsh = parallel.batch_sharding(mesh, cfg)
    objective = preference.preference_objective(cfg) if "prefs" in cfg else None
    step = jit_train_step(cfg, setup.tx, setup.shardings, bsh, setup.param_transform, objective)
    batch = random_train_batch(cfg.model.vocab_size, rows, seq_len)
    batch["loss_mask"][:, : seq_len // 2] = 0.0  # a prompt, then the response
    if mode.endswith("-pre"):
        batch["ref_logp"] = np.full((rows, 1), -300.0, np.float32)
    batch = parallel.global_batch(batch, bsh)
    t = time.perf_counter()
    compiled = step.lower(jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                       setup.abstract, setup.shardings), batch).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes)
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(setup.abstract))
    state, _ = state_lib.init_state(cfg, mesh, setup.tx, jax.random.key(0))
    state, m = compiled(state, batch)  # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = compiled(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    del state
    return {"mode": mode, "state_gib": state_bytes / GIB, "temp_gib": mem.temp_size_in_bytes / GIB,
            "peak_gib": peak / GIB, "gflops": flops / 1e9, "step_s": statistics.median(times),
            "compile_s": compile_s,
            "loss": float(m["loss"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2, help="sequences per step (DPO: 2 per pair)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"OpenELM-270M, {args.rows} rows x {args.seq_len} tokens, median of {args.steps} steps")
    rows = {}
    for mode in args.modes.split(","):
        rows[mode] = measure(mode, args.rows, args.seq_len, args.steps)
        print(f"measured {mode}: {rows[mode]}", flush=True)
    print("| method | train state GiB | step peak GiB (compiled) | step temporaries GiB | step GFLOP "
          "(compiled) | step time s | peak vs SFT | FLOPs vs SFT | step time vs SFT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, r in rows.items():
        base = rows.get("sft-lora" if "lora" in mode else "sft", r)
        print(f"| {mode} | {r['state_gib']:.2f} | {r['peak_gib']:.2f} | {r['temp_gib']:.2f} | "
              f"{r['gflops']:.0f} | {r['step_s']:.2f} | {r['peak_gib'] / base['peak_gib']:.2f} | "
              f"{r['gflops'] / base['gflops']:.2f} | {r['step_s'] / base['step_s']:.2f} |")
    print("compile s: " + ", ".join(f"{m} {r['compile_s']:.0f}" for m, r in rows.items()))


if __name__ == "__main__":
    main()
