"""Before/after of the tied LM head: ``h @ E.T``, which XLA's CPU backend runs with a
transposed copy of the embedding on every call (before), vs contracting the
``[vocab, embed]`` table in place (now) — for decode and for the training step.

Both programs are compiled in one process and timed in interleaved rounds (fastest
round kept), so machine load hits both alike; decode is also profiled
(``elmjax.inference.decode_profile``) to show the LM head's own time. Random weights.

    PYTHONPATH=. python benchmarks/lm_head.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax

from elmjax import config as config_lib
from elmjax.inference import sampling
from elmjax.inference.decode_profile import decode_profile
from elmjax.inference.throughput import DecodeBench
from elmjax.model import openelm
from elmjax.model.layers import matmul
from elmjax.train.synthetic import compiled_train_step

# Training steps: (name, config, dtype, batch, seq_len)
TRAIN_CASES = [
    ("quickstart", "experiments/quickstart.py", "float32", 8, 256),
    ("openelm-270m", "experiments/openelm_270m.py", "float32", 2, 256),
    ("openelm-270m", "experiments/openelm_270m.py", "bfloat16", 2, 256),
]
# Decode: (name, config, dtype, prompt_len, gen_len)
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


def interleaved_best(fns: dict, rounds: int) -> dict:
    """Fastest of ``rounds`` (after one warm-up) of each ``fn()``, the variants alternating."""
    best = {k: float("inf") for k in fns}
    for i in range(rounds + 1):
        for kind, fn in fns.items():
            t = fn()
            if i:
                best[kind] = min(best[kind], t)
    return best


def train_rows(quick, rounds):
    rows = []
    for name, path, dtype, batch, seq_len in TRAIN_CASES:
        if quick and name != "quickstart":
            continue
        cfg = config_lib.load(path)
        cfg.model.dtype, cfg.train.global_batch_size, cfg.data.seq_len = dtype, batch, seq_len
        steps = {}
        for kind in ("before", "now"):
            with head(kind):
                steps[kind] = list(compiled_train_step(cfg))

        def timed(kind):
            step, state, b, _ = steps[kind]
            t0 = time.perf_counter()
            state, metrics = step(state, b)
            jax.block_until_ready(state)
            steps[kind][1] = state
            return time.perf_counter() - t0

        best = interleaved_best({k: (lambda k=k: timed(k)) for k in steps}, rounds)
        rows.append((name, dtype, batch, seq_len, 1e3 * best["before"], 1e3 * best["now"]))
        print(f"train {name} {dtype} {batch}x{seq_len}: {rows[-1][4]:.0f} -> {rows[-1][5]:.0f} ms",
              flush=True)
    return rows


def decode_row(name, path, dtype, p, g, rounds):
    cfg = config_lib.load(path)
    cfg.model.dtype = dtype
    params = openelm.init_params(cfg, jax.random.key(0))
    b = DecodeBench(cfg, params, 1, p, g, sampling.Sampler())
    call = (b.params, b.prefill(), b.budget, b.stop, b.key, b.pad)
    compiled = {}
    for kind in ("before", "now"):
        with head(kind):
            compiled[kind] = b.fresh_loop().lower(*call).compile()

    def timed(fn):
        state = jax.block_until_ready(b.prefill())
        t0 = time.perf_counter()
        jax.block_until_ready(fn(b.params, state, b.budget, b.stop, b.key, b.pad))
        return time.perf_counter() - t0

    best = interleaved_best({k: (lambda f=f: timed(f)) for k, f in compiled.items()}, rounds)
    ms = {k: 1e3 * t / (g - 1) for k, t in best.items()}
    head_ms = {}
    for kind in ("before", "now"):
        with head(kind):
            prof = decode_profile(cfg, params, 1, p, g, reps=3)
        print(f"\n{name} {dtype}, LM head {kind}:\n{prof.format()}", flush=True)
        head_ms[kind] = (prof.op_ms["LM head"], prof.share("LM head"))
    return name, dtype, ms["before"], ms["now"], head_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quickstart only")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    rows = [decode_row(*case, args.rounds) for case in CASES
            if not args.quick or case[0] == "quickstart"]
    train = train_rows(args.quick, max(3, args.rounds // 2))
    print("\n| model | dtype | decode ms/step before | now | speed-up | LM head ms before "
          "(share) | now (share) |")
    print("|---|---|---|---|---|---|---|")
    for name, dtype, before, now, hm in rows:
        print(f"| {name} | {dtype} | {before:.3f} | {now:.3f} | {before / now:.2f}x "
              f"| {hm['before'][0]:.3f} ({100 * hm['before'][1]:.0f}%) "
              f"| {hm['now'][0]:.3f} ({100 * hm['now'][1]:.0f}%) |")
    print("\n| model | dtype | train batch | step ms before | now | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, dtype, batch, seq_len, before, now in train:
        print(f"| {name} | {dtype} | {batch}x{seq_len} | {before:.0f} | {now:.0f} "
              f"| {before / now:.2f}x |")


if __name__ == "__main__":
    main()
