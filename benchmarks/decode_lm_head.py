"""Before/after of the tied LM head in decode: a transposed copy of the embedding per step
(before) vs contracting the ``[vocab, embed]`` table in place (now).

Both programs are compiled in one process and timed in interleaved rounds (fastest
round kept), so machine load hits both alike; then each is profiled
(``elmjax.bench.decode_profile``) to show the LM head's own time. Random weights.

    PYTHONPATH=. python benchmarks/decode_lm_head.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax

from elmjax import bench
from elmjax import config as config_lib
from elmjax.inference import sampling
from elmjax.model import openelm
from elmjax.model.layers import matmul

# (name, config, dtype, prompt_len, gen_len)
CASES = [
    ("quickstart", "experiments/quickstart.py", "float32", 128, 64),
    ("openelm-270m", "experiments/openelm_270m.py", "float32", 64, 16),
    ("openelm-270m", "experiments/openelm_270m.py", "bfloat16", 64, 16),
]


def _transposed_head_matmul(x, w, dtype, out_dtype=None, w_in_axis=0):
    """The head as it was: ``x @ E.T`` (XLA's CPU backend copies E transposed every call)."""
    return matmul(x, w.T if w_in_axis == 1 else w, dtype, out_dtype)


@contextlib.contextmanager
def head(kind):
    """Builds the model's LM head as it was ("before") or as it is ("now")."""
    now = openelm.matmul  # the name OpenELM.logits calls
    if kind == "before":
        openelm.matmul = _transposed_head_matmul
    try:
        yield
    finally:
        openelm.matmul = now


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quickstart only")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    rows = []
    for name, path, dtype, p, g in CASES:
        if args.quick and name != "quickstart":
            continue
        cfg = config_lib.load(path)
        cfg.model.dtype = dtype
        params = openelm.init_params(cfg, jax.random.key(0))
        b = bench._Bench(cfg, params, 1, p, g, sampling.Sampler())
        call = (b.params, b.prefill(), b.budget, b.stop, b.key, b.pad)
        compiled = {}
        for kind in ("before", "now"):
            with head(kind):
                compiled[kind] = b.fresh_loop().lower(*call).compile()
        best = {k: float("inf") for k in compiled}
        for _ in range(args.rounds + 1):  # the first round is a warm-up
            for kind, fn in compiled.items():
                state = jax.block_until_ready(b.prefill())
                t0 = time.perf_counter()
                jax.block_until_ready(fn(b.params, state, b.budget, b.stop, b.key, b.pad))
                best[kind] = min(best[kind], time.perf_counter() - t0)
        ms = {k: 1e3 * t / (g - 1) for k, t in best.items()}
        head_ms = {}
        for kind in ("before", "now"):
            with head(kind):
                prof = bench.decode_profile(cfg, params, 1, p, g, reps=3)
            head_ms[kind] = (prof.op_ms["LM head"], prof.share("LM head"))
            print(f"\n{name} {dtype}, LM head {kind}:\n{prof.format()}", flush=True)
        rows.append((name, dtype, ms["before"], ms["now"], head_ms))
        del params, b, compiled
    print("\n| model | dtype | decode ms/step before | now | speed-up | LM head ms before "
          "(share) | now (share) |")
    print("|---|---|---|---|---|---|---|")
    for name, dtype, before, now, hm in rows:
        print(f"| {name} | {dtype} | {before:.3f} | {now:.3f} | {before / now:.2f}x "
              f"| {hm['before'][0]:.3f} ({100 * hm['before'][1]:.0f}%) "
              f"| {hm['now'][0]:.3f} ({100 * hm['now'][1]:.0f}%) |")


if __name__ == "__main__":
    main()
