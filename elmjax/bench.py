"""Throughput measurements: prefill and generation tokens/s, and where decode time goes.

Measured as the OpenELM paper does: warm-up runs excluded, several repetitions,
the median reported. Prefill is one forward pass over ``batch x prompt_len``
tokens filling the KV cache (and choosing the first token); generation is the
compiled decode loop producing the remaining ``gen_len - 1`` tokens per row.

The decode breakdown times variants of the decode loop with one component
removed (replaced by the identity, or by zeros for a whole sub-layer) and
reports the time each removal saves, per step and as a share of the full step.

For training benchmarks, ``compiled_train_step`` builds the sharded state and the
jitted step of a run config on random tokens, timing its compilation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from elmjax.inference import generation as gen_lib
from elmjax.inference import sampling
from elmjax.inference.cache import cast_params
from elmjax.model import layers
from elmjax.model.openelm import model_section


def random_train_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """A numpy training batch of random tokens: one document per row, every target counted."""
    tok = np.random.default_rng(seed).integers(0, vocab_size, (batch, seq_len + 1)).astype(np.int32)
    return {"inputs": tok[:, :-1], "targets": tok[:, 1:],
            "segment_ids": np.ones((batch, seq_len), np.int32),
            "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
            "loss_mask": np.ones((batch, seq_len), np.float32)}


def compiled_train_step(cfg, seed: int = 0):
    """``(step, state, batch, compile_seconds)`` for ``cfg`` on all local devices.

    ``step(state, batch) -> (state, metrics)`` is compiled ahead of time with the run's
    shardings (state donated); the batch is ``train.global_batch_size x data.seq_len``
    random tokens placed as a global array.
    """
    from elmjax import parallel
    from elmjax.train import optimizer, state
    from elmjax.train.step import make_train_step

    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    st, shardings = state.init_state(cfg, mesh, tx, jax.random.key(seed))
    bsh = parallel.batch_sharding(mesh, cfg)
    batch = parallel.global_batch(random_train_batch(
        cfg.model.vocab_size, cfg.train.global_batch_size, cfg.data.seq_len, seed), bsh)
    fn = jax.jit(make_train_step(cfg, tx), in_shardings=(shardings, bsh),
                 out_shardings=(shardings, None), donate_argnums=0)
    t = time.perf_counter()
    compiled = fn.lower(st, batch).compile()
    return compiled, st, batch, time.perf_counter() - t


def median_time(fn: Callable[[], object], reps: int = 5, warmup: int = 1,
                setup: Callable[[], object] | None = None, reduce=statistics.median) -> float:
    """Median (or ``reduce``) seconds of ``fn(setup())`` (or ``fn()``) over ``reps`` runs.

    ``warmup`` runs (compilation included) come first and are not counted. The
    result of ``fn`` is waited for (``jax.block_until_ready``); ``setup``, if given,
    builds fresh arguments outside the timed region (e.g. a donated state).
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


@dataclasses.dataclass
class InferenceThroughput:
    """Medians of one prefill/generation measurement."""

    batch: int
    prompt_len: int
    gen_len: int
    prefill_s: float
    decode_s: float

    @property
    def prefill_tok_s(self) -> float:
        """Prompt tokens processed per second (all rows)."""
        return self.batch * self.prompt_len / self.prefill_s

    @property
    def gen_tok_s(self) -> float:
        """Generated tokens per second (all rows), decode steps only."""
        return self.batch * (self.gen_len - 1) / self.decode_s

    @property
    def step_ms(self) -> float:
        """Milliseconds per decode step (one token for every row)."""
        return 1e3 * self.decode_s / (self.gen_len - 1)


class _Bench:
    """Prepared inputs for timing prefill and decode of one model shape."""

    def __init__(self, config, params, batch, prompt_len, gen_len, sampler, seed=0):
        if gen_len < 2:
            raise ValueError(f"gen_len must be >= 2 (one prefill token + decode), got {gen_len}")
        self.m = model_section(config)
        self.params = jax.block_until_ready(cast_params(self.m, params))
        self.sampler = sampler
        self.gen_len = gen_len
        tokens = np.random.default_rng(seed).integers(1, self.m.vocab_size, (batch, prompt_len))
        self.prompts = gen_lib.PaddedPrompts(*map(jnp.asarray, gen_lib.pad_prompts(tokens)))
        self.budget = jnp.full((batch,), gen_len, jnp.int32)
        self.stop = jnp.full((8,), -1, jnp.int32)
        self.key = jax.random.key(seed)
        self.pad = jnp.int32(0)

    def prefill(self):
        return gen_lib.prefill(self.m, self.sampler, self.params, self.prompts, self.budget,
                               self.stop, self.key, self.pad, self.gen_len)

    def fresh_loop(self):
        """A newly traced decode loop (so patched model functions take effect)."""
        m, sampler = self.m, self.sampler

        def loop(params, state, budget, stop, key, pad):
            def body(_, s):
                return gen_lib.decode_step(m, sampler, params, s, budget, stop, key, pad)
            return jax.lax.fori_loop(0, self.gen_len - 1, body, state)

        return jax.jit(loop, donate_argnums=1)

    def time_decode(self, reps, warmup, loop=None, reduce=statistics.median) -> float:
        loop = loop or self.fresh_loop()
        return median_time(
            lambda s: loop(self.params, s, self.budget, self.stop, self.key, self.pad),
            reps, warmup, setup=self.prefill, reduce=reduce)


def measure_inference(config, params, batch: int, prompt_len: int, gen_len: int, reps: int = 5,
                      warmup: int = 1, sampler: sampling.Sampler = sampling.Sampler(),
                      ) -> InferenceThroughput:
    """Prefill and generation throughput of ``batch`` random prompts of ``prompt_len`` tokens.

    ``gen_len`` tokens are produced per row (the first by prefill). Stop tokens are
    off, so every row decodes the full length. Returns medians over ``reps``.
    """
    b = _Bench(config, params, batch, prompt_len, gen_len, sampler)
    prefill_s = median_time(b.prefill, reps, warmup)
    decode_s = b.time_decode(reps, warmup)
    return InferenceThroughput(batch, prompt_len, gen_len, prefill_s, decode_s)


def _zero_sublayer(kind):
    """A Linen module class standing in for Attention / FeedForward that outputs zeros."""
    import flax.linen as nn

    class Removed(nn.Module):
        cfg: object
        a: int = 0
        b: int = 0

        def __call__(self, x, *args):
            y = jnp.zeros_like(x)
            if kind == "attn" and len(args) > 3 and args[3] is not None:
                return y, args[3]
            return y

    return Removed


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _variants(head_dim):
    """name -> context manager factory removing that component from the traced model."""
    def keep_logits_sample(logits, key, sampler):
        # A token that still depends on the logits (so the LM head is not removed).
        return (logits[:, 0] > 0).astype(jnp.int32)

    return {
        "normalisation (all RMSNorms)": lambda: _patched(layers, "rms_norm", lambda x, w, eps: x),
        "q/k RMSNorm": lambda: _patched(
            layers, "rms_norm",
            lambda x, w, eps, f=layers.rms_norm: x if x.shape[-1] == head_dim else f(x, w, eps)),
        "RoPE": lambda: _patched(layers, "apply_rope", lambda x, cos, sin: x),
        "attention core (QK, softmax, AV)": lambda: _patched(
            layers, "grouped_attention", lambda q, k, v, mask, impl="xla": q),
        "attention sub-layer": lambda: _patched(layers, "Attention", _zero_sublayer("attn")),
        "FFN": lambda: _patched(layers, "FeedForward", _zero_sublayer("ffn")),
        "sampling": lambda: _patched(gen_lib, "sample", keep_logits_sample),
    }


def decode_breakdown(config, params, batch: int, prompt_len: int, gen_len: int, reps: int = 5,
                     warmup: int = 1, sampler: sampling.Sampler = sampling.Sampler()) -> dict:
    """Decode time per step by component, from timing the loop with each component removed.

    Every variant is compiled first; then ``reps`` rounds time each variant once
    (a ``gen_len - 1`` step decode loop), so slow drifts in machine load hit all
    variants alike, and the fastest round of each is kept. Returns
    ``{"full step": ms, component: ms saved, ...}`` plus derived rows:
    ``attention (projections + core)`` = sub-layer minus its q/k norms and RoPE,
    and ``other`` = the full step minus attention, FFN, normalisation, RoPE and
    sampling (embedding, LM head, residuals, cache writes, loop overhead).
    Removing a component also changes what XLA fuses, so shares are approximate.
    """
    b = _Bench(config, params, batch, prompt_len, gen_len, sampler)
    args = (b.params, b.prefill(), b.budget, b.stop, b.key, b.pad)
    # A second copy of the unchanged loop: its difference from the first is the
    # measurement's noise floor on this machine.
    compiled = {"full step": b.fresh_loop().lower(*args).compile(),
                "noise floor (unchanged copy)": b.fresh_loop().lower(*args).compile()}
    for name, patch in _variants(b.m.head_dim).items():
        with patch():
            compiled[name] = b.fresh_loop().lower(*args).compile()
    best = {name: float("inf") for name in compiled}
    for i in range(warmup + reps):
        for name, fn in compiled.items():
            state = jax.block_until_ready(b.prefill())
            t0 = time.perf_counter()
            jax.block_until_ready(fn(b.params, state, b.budget, b.stop, b.key, b.pad))
            if i >= warmup:
                best[name] = min(best[name], time.perf_counter() - t0)
    ms = {name: 1e3 * t / (gen_len - 1) for name, t in best.items()}
    full = ms["full step"]
    out = {"full step": full}
    out.update({name: full - t for name, t in ms.items() if name != "full step"})
    out["attention (projections + core)"] = (out["attention sub-layer"] - out["q/k RMSNorm"]
                                             - out["RoPE"])
    out["other"] = out["full step"] - sum(out[k] for k in (
        "attention sub-layer", "FFN", "normalisation (all RMSNorms)", "sampling")) + out[
        "q/k RMSNorm"]
    return out


def format_breakdown(breakdown: dict) -> str:
    """A text table of ``decode_breakdown`` output: ms per step and share of the step."""
    full = breakdown["full step"]
    rows = [f"{'component':<34} {'ms/step':>8} {'share':>7}"]
    width = 34
    for name in ("full step", "attention (projections + core)", "attention core (QK, softmax, AV)",
                 "FFN", "normalisation (all RMSNorms)", "q/k RMSNorm", "RoPE", "sampling", "other",
                 "noise floor (unchanged copy)"):
        v = breakdown[name]
        rows.append(f"{name:<{width}} {v:>8.3f} {100 * v / full:>6.1f}%")
    return "\n".join(rows)


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 10) -> float:
    """Measured device memory bandwidth in bytes/s: a jitted copy reads and writes ``nbytes``."""
    x = jnp.ones((nbytes // 4,), jnp.float32)
    copy = jax.jit(lambda a: a + 0.0)
    t = median_time(lambda: copy(x), reps, warmup=2)
    return 2 * x.nbytes / t


def decode_bytes_per_step(config, batch: int, cache_len: int) -> int:
    """Bytes a decode step must read: every weight once (in the compute dtype) plus the cache.

    The whole preallocated cache of ``cache_len`` slots is read (the attention spans all slots).
    """
    from elmjax.config import param_count
    from elmjax.inference.cache import cache_bytes

    m = model_section(config)
    return param_count(m) * jnp.dtype(m.dtype).itemsize + cache_bytes(m, batch, cache_len)


def generation_bound(config, batch: int, cache_len: int, bandwidth: float) -> float:
    """Memory-bandwidth limit on generation tokens/s (all rows): ``batch * bandwidth / bytes``."""
    return batch * bandwidth / decode_bytes_per_step(config, batch, cache_len)
