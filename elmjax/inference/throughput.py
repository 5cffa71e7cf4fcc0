"""Inference throughput: prefill and generation tokens/s, and the memory-bandwidth bound.

Measured as the OpenELM paper does: warm-up runs excluded, several repetitions, the median
reported. Prefill is one forward pass over ``batch x prompt_len`` tokens filling the KV
cache (and choosing the first token); generation is the compiled decode loop producing the
remaining ``gen_len - 1`` tokens per row.
"""

from __future__ import annotations

import dataclasses
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from elmjax.inference import generation as gen_lib
from elmjax.inference import sampling
from elmjax.inference.cache import cache_bytes, cast_params
from elmjax.model.openelm import model_section
from elmjax.model.schedule import param_count
from elmjax.perf import median_time


@dataclasses.dataclass
class InferenceThroughput:
    """Medians of one prefill/generation measurement (seconds for the whole batch)."""

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


class DecodeBench:
    """Prepared inputs for timing prefill and decode of one model shape.

    config: a run config or its model section; params: the parameter tree (cast to the
    compute dtype here); ``batch`` random prompts of ``prompt_len`` tokens, ``gen_len``
    tokens generated per row (the first by prefill), stop tokens off. ``prefill()`` returns
    a fresh decode state; ``loop(params, state, budget, stop, key, pad)`` from
    ``fresh_loop()`` runs the ``gen_len - 1`` decode steps (the state is donated).
    """

    def __init__(self, config, params, batch: int, prompt_len: int, gen_len: int,
                 sampler: sampling.Sampler = sampling.Sampler(), seed: int = 0):
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

    @property
    def loop_args(self) -> tuple:
        """The decode loop's arguments after the state: ``(budget, stop, key, pad)``."""
        return self.budget, self.stop, self.key, self.pad

    def prefill(self) -> gen_lib.DecodeState:
        """Runs prefill on the prompts: the decode state after the first token."""
        return gen_lib.prefill(self.m, self.sampler, self.params, self.prompts, self.budget,
                               self.stop, self.key, self.pad, self.gen_len)

    def fresh_loop(self):
        """A newly traced, jitted decode loop (so patched model functions take effect)."""
        m, sampler = self.m, self.sampler

        def loop(params, state, budget, stop, key, pad):
            def body(_, s):
                return gen_lib.decode_step(m, sampler, params, s, budget, stop, key, pad)
            return jax.lax.fori_loop(0, self.gen_len - 1, body, state)

        return jax.jit(loop, donate_argnums=1)

    def time_decode(self, reps: int, warmup: int, loop=None, reduce=statistics.median) -> float:
        """Seconds of one decode loop (``reduce`` over ``reps``), each from a fresh prefill."""
        loop = loop or self.fresh_loop()
        return median_time(lambda s: loop(self.params, s, *self.loop_args),
                           reps, warmup, setup=self.prefill, reduce=reduce)


def measure_inference(config, params, batch: int, prompt_len: int, gen_len: int, reps: int = 5,
                      warmup: int = 1, sampler: sampling.Sampler = sampling.Sampler(),
                      ) -> InferenceThroughput:
    """Prefill and generation throughput of ``batch`` random prompts of ``prompt_len`` tokens.

    ``gen_len`` tokens are produced per row (the first by prefill). Stop tokens are off, so
    every row decodes the full length. Returns medians over ``reps``.
    """
    b = DecodeBench(config, params, batch, prompt_len, gen_len, sampler)
    prefill_s = median_time(b.prefill, reps, warmup)
    decode_s = b.time_decode(reps, warmup)
    return InferenceThroughput(batch, prompt_len, gen_len, prefill_s, decode_s)


def decode_bytes_per_step(config, batch: int, cache_len: int) -> int:
    """Bytes a decode step must read: every weight once (in the compute dtype) plus the cache.

    The whole preallocated cache of ``cache_len`` slots is read (the attention spans all slots).
    """
    m = model_section(config)
    return param_count(m) * jnp.dtype(m.dtype).itemsize + cache_bytes(m, batch, cache_len)


def generation_bound(config, batch: int, cache_len: int, bandwidth: float) -> float:
    """Memory-bandwidth limit on generation tokens/s (all rows): ``batch * bandwidth / bytes``
    with ``bandwidth`` in bytes/s (e.g. ``elmjax.perf.copy_bandwidth()``)."""
    return batch * bandwidth / decode_bytes_per_step(config, batch, cache_len)
