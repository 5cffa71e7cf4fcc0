"""elmjax vs Apple's mlx-lm: prefill and generation tokens/s on the same weights, same CPU.

Each model shape gets random weights, written once in the Hugging Face OpenELM
layout and loaded by both implementations (float32 on both sides). Both are
measured the same way: warm-up excluded, median of several repetitions; prefill
is one pass over the prompt batch filling the KV cache, generation is greedy
decoding of the remaining ``gen - 1`` tokens per row. MLX decodes with
``async_eval`` pipelining as ``mlx_lm.generate_step`` does. Then the decode time
of elmjax is broken down by component (``elmjax.inference.decode_profile``).

    PYTHONPATH=. python benchmarks/infer_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import tempfile
import time

import jax
import numpy as np

from elmjax import config as config_lib
from elmjax.inference.decode_profile import decode_profile
from elmjax.inference.throughput import measure_inference
from elmjax.interop import hf
from elmjax.model.openelm import init_params

# (name, config, batch, prompt_len, gen_len, reps)
CASES = [
    ("quickstart", "experiments/quickstart.py", 1, 128, 64, 5),
    ("quickstart", "experiments/quickstart.py", 4, 128, 64, 5),
    ("openelm-270m", "experiments/openelm_270m.py", 1, 64, 16, 3),
]


def mlx_throughput(path, batch, prompt_len, gen_len, reps, warmup=1):
    """(prefill seconds, decode seconds), medians, for mlx-lm on the checkpoint at ``path``."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load_model

    model, _ = load_model(pathlib.Path(path))
    vocab = model.args.vocab_size
    tokens = mx.array(np.random.default_rng(0).integers(1, vocab, (batch, prompt_len)))

    def prefill():
        cache = make_prompt_cache(model)
        y = mx.argmax(model(tokens, cache=cache)[:, -1], axis=-1)
        mx.eval(y)
        return cache, y

    def decode(cache, y):
        for _ in range(gen_len - 1):
            y = mx.argmax(model(y[:, None], cache=cache)[:, -1], axis=-1)
            mx.async_eval(y)
        mx.eval(y)

    pre, dec = [], []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        cache, y = prefill()
        t1 = time.perf_counter()
        decode(cache, y)
        t2 = time.perf_counter()
        if i >= warmup:
            pre.append(t1 - t0)
            dec.append(t2 - t1)
    return statistics.median(pre), statistics.median(dec)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"jax {jax.__version__}, mlx {__import__('mlx.core').core.__version__}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quickstart cases only")
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    print(machine())
    rows, breakdowns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg_path, b, p, g, reps in CASES:
            if args.quick and name != "quickstart":
                continue
            cfg = config_lib.load(cfg_path)
            cfg.model.dtype = "float32"
            path = pathlib.Path(tmp) / name
            if not path.exists():
                hf.save_hf(path, cfg, init_params(cfg, jax.random.key(0)))
            cfg, params = hf.load_hf(path)  # exactly the weights MLX reads
            ours = measure_inference(cfg, params, b, p, g, reps=reps)
            mlx_pre, mlx_dec = mlx_throughput(path, b, p, g, reps)
            mlx_pre_tps, mlx_gen_tps = b * p / mlx_pre, b * (g - 1) / mlx_dec
            rows.append((name, b, p, g, ours.prefill_tok_s, mlx_pre_tps, ours.gen_tok_s,
                         mlx_gen_tps))
            print(f"{name} b={b} p={p} g={g}: prefill {ours.prefill_tok_s:.0f} vs "
                  f"{mlx_pre_tps:.0f} tok/s, generation {ours.gen_tok_s:.1f} vs "
                  f"{mlx_gen_tps:.1f} tok/s", flush=True)
            if not args.no_breakdown and b == 1:
                breakdowns[name] = decode_profile(cfg, params, b, p, g, reps=reps)
            del params
    print()
    print("| model | batch | prompt | gen | prefill tok/s elmjax | mlx-lm | ratio "
          "| generation tok/s elmjax | mlx-lm | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, b, p, g, op, mp, og, mg in rows:
        print(f"| {name} | {b} | {p} | {g} | {op:.0f} | {mp:.0f} | {op / mp:.2f}x "
              f"| {og:.1f} | {mg:.1f} | {og / mg:.2f}x |")
    for name, bd in breakdowns.items():
        print(f"\nelmjax decode time by component, {name}, batch 1 (profiler trace):")
        print(bd.format())


if __name__ == "__main__":
    main()
