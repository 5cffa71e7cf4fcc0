"""Attention implementations: ``xla`` / ``cudnn`` (``jax.nn.dot_product_attention``),
``einsum`` (grouped einsums, no repeated keys/values) and ``splash`` (JAX's TPU Pallas
splash-attention kernel; Pallas interpret mode off TPU). ``auto`` is ``splash`` when the
program is compiled for TPU and the length suits the kernel, ``xla`` otherwise.

Shapes: queries ``[batch, q_len, q_heads, head_dim]``, keys/values
``[batch, kv_len, kv_heads, head_dim]``; query head ``h`` attends with kv head
``h // (q_heads // kv_heads)`` (grouped-query attention).

Splash and GQA: the kernel's multi-head form takes ``q_heads`` query heads and any
``kv_heads`` dividing them and maps query head ``h`` to kv head ``h // (q_heads //
kv_heads)`` in its block index maps, which is OpenELM's grouping; so one kernel per layer
serves that layer's own head counts with no repeated keys/values and no vmap over kv heads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from elmjax import parallel

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "einsum", "splash")
_SPLASH_BLOCKS = (512, 256, 128)


def target_platform() -> str:
    """Platform the current trace compiles for: the active mesh's devices, else JAX's default."""
    ctx = parallel.active_sharding()
    if ctx is not None:
        return ctx.mesh.devices.flat[0].platform
    return jax.default_backend()


def splash_block(length: int, interpret: bool) -> int | None:
    """The splash kernel's block size for ``length`` (a multiple of 128 on TPU), or ``None``."""
    for b in _SPLASH_BLOCKS:
        if length % b == 0:
            return b
    return length if interpret else None


def resolve(impl: str, length: int, cached: bool = False) -> str:
    """The implementation ``impl`` runs as for a sequence of ``length`` (``cached``: decoding
    against a KV cache, where the kernel does not apply and ``xla`` runs)."""
    if impl == "auto":
        on_tpu = target_platform() == "tpu"
        impl = "splash" if on_tpu and not cached and splash_block(length, False) else "xla"
    if impl == "splash" and cached:
        return "xla"
    return impl


def dense_attention(q, k, v, mask, impl: str = "xla"):
    """Attention with a boolean ``[batch, 1, q_len, kv_len]`` mask (``xla``/``cudnn``/``einsum``).

    Returns ``[batch, q_len, q_heads, head_dim]`` in q's dtype.
    """
    if impl in ("xla", "cudnn"):
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)
    b, t, nq, hd = q.shape
    nkv = k.shape[2]
    qg = q.reshape(b, t, nkv, nq // nkv, hd)
    scores = jnp.einsum("btkgh,bskh->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (hd ** -0.5)
    scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v, preferred_element_type=jnp.float32)
    return out.reshape(b, t, nq, hd).astype(q.dtype)


def _splash_local(q, k, v, segment_ids, interpret: bool):
    """Splash on one device's share: q ``[b, t, nq, d]``, k/v ``[b, t, nkv, d]``, segment ids
    ``[b, t]`` -> ``[b, t, nq, d]``; causal within each segment."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk, splash_attention_mask as sm)

    b, t, nq, hd = q.shape
    blk = splash_block(t, interpret)
    if blk is None:
        raise ValueError(f"model.attention='splash' needs a sequence length divisible by 128 "
                         f"on TPU, got {t}; set data.seq_len accordingly or use 'xla'")
    sizes = sk.BlockSizes(block_q=blk, block_kv=blk, block_kv_compute=blk, block_q_dkv=blk,
                          block_kv_dkv=blk, block_kv_dkv_compute=blk, block_q_dq=blk,
                          block_kv_dq=blk)
    mask = sm.MultiHeadMask([sm.CausalMask((t, t))] * nq)
    kernel = sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                interpret=interpret)
    # The kernel takes one sequence, heads first, and does not scale the queries.
    qh = (q * jnp.asarray(hd ** -0.5, q.dtype)).transpose(0, 2, 1, 3)
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    seg = segment_ids.astype(jnp.int32)
    out = jax.vmap(lambda q1, k1, v1, s1: kernel(q1, k1, v1, segment_ids=sk.SegmentIds(s1, s1)))(
        qh, kh, vh, seg)
    return out.transpose(0, 2, 1, 3).astype(q.dtype)


def splash_attention(q, k, v, segment_ids):
    """Causal attention within segments with the splash kernel.

    q: ``[batch, length, q_heads, head_dim]``; k, v: ``[batch, length, kv_heads, head_dim]``;
    segment_ids: int ``[batch, length]``. Returns q's shape and dtype. Under an active
    activation sharding the kernel runs per device (``shard_map``) on the batch shard and,
    where the layer's kv heads divide the tensor axis, on a head shard.
    """
    interpret = target_platform() != "tpu"
    ctx = parallel.active_sharding()
    if ctx is None:
        return _splash_local(q, k, v, segment_ids, interpret)
    heads = ("heads", "kv_heads") if ctx.divides("kv_heads", k.shape[2]) else (None, None)
    q_spec = ctx.spec(q.shape, ("batch", None, heads[0], None))
    kv_spec = ctx.spec(k.shape, ("batch", None, heads[1], None))
    seg_spec = ctx.spec(segment_ids.shape, ("batch", None))
    fn = jax.shard_map(lambda *a: _splash_local(*a, interpret), mesh=ctx.mesh,
                       in_specs=(q_spec, kv_spec, kv_spec, seg_spec), out_specs=q_spec,
                       check_vma=False)
    return fn(q, k, v, segment_ids)
