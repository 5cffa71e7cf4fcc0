"""A preallocated key/value cache and the model calls that read and extend it.

The cache has ``cache_len`` slots shared by the batch. Each layer keeps keys and
values of its own kv-head count (layer-wise scaling; grouped-query attention
caches only the kv heads). Slots are written left to right at ``index``; a
per-slot ``valid`` flag marks real tokens, so prompts padded on either side
share one write position while every token keeps its own RoPE position.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from elmjax.model.schedule import layer_schedule
from elmjax.model.openelm import OpenELM, build, model_section


class KVCache(NamedTuple):
    """Per-layer keys/values plus slot bookkeeping (a pytree).

    kv: per layer ``(k, v)``, each ``[batch, cache_len, kv_heads_i, head_dim]``.
    valid: bool ``[batch, cache_len]``, True where a slot holds a real token.
    index: int32 scalar, the next slot to write.
    """

    kv: tuple
    valid: jax.Array
    index: jax.Array

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def length(self) -> int:
        """Number of slots (``cache_len``)."""
        return self.valid.shape[1]


def init_cache(config, batch_size: int, cache_len: int, dtype=None) -> KVCache:
    """An empty cache of ``cache_len`` slots; keys/values in ``dtype`` (default: compute dtype)."""
    m = model_section(config)
    dtype = jnp.dtype(dtype or m.dtype)
    kv = tuple(
        (jnp.zeros((batch_size, cache_len, s.num_kv_heads, m.head_dim), dtype),
         jnp.zeros((batch_size, cache_len, s.num_kv_heads, m.head_dim), dtype))
        for s in layer_schedule(m))
    return KVCache(kv, jnp.zeros((batch_size, cache_len), bool), jnp.zeros((), jnp.int32))


def cache_bytes(config, batch_size: int, cache_len: int, dtype=None) -> int:
    """Bytes of keys and values a full cache holds."""
    m = model_section(config)
    itemsize = jnp.dtype(dtype or m.dtype).itemsize
    heads = sum(s.num_kv_heads for s in layer_schedule(m))
    return 2 * batch_size * cache_len * heads * m.head_dim * itemsize


def extend(config, params, cache: KVCache, tokens, positions, token_valid=None,
           all_logits: bool = False):
    """Writes ``tokens`` into the cache at ``cache.index`` and returns their logits.

    tokens, positions: int ``[batch, length]``; token_valid: bool ``[batch, length]``
    (default all True). Returns ``(logits, cache)``: float32 logits
    ``[batch, length, vocab]`` if ``all_logits`` else ``[batch, vocab]`` for the last
    slot, and the cache advanced by ``length`` slots. Pure; jit it with
    ``all_logits`` static. Prefill is one call with the whole (padded) prompt,
    a decode step is a call with ``length == 1``.
    """
    module = build(config)
    if token_valid is None:
        token_valid = jnp.ones(tokens.shape, bool)
    logits, kv, valid = module.apply(
        {"params": params}, tokens, positions, token_valid, cache.kv, cache.valid, cache.index,
        all_logits, method=OpenELM.decode)
    if not all_logits:
        logits = logits[:, 0]
    return logits, KVCache(kv, valid, cache.index + tokens.shape[1])


def cast_params(config, params):
    """Parameters cast once to the compute dtype (floating leaves only).

    The model casts weights to the compute dtype at every matmul anyway, so the
    result is numerically identical; decoding then reads half the bytes per token
    when computing in bfloat16.
    """
    dtype = jnp.dtype(model_section(config).dtype)
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
