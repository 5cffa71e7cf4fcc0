"""OpenELM building blocks (Flax Linen, used purely functionally).

Every parameter carries logical axis names (``embed``, ``qkv``, ``heads``,
``mlp``, ``vocab``, ``norm``) that ``elmjax.parallel`` maps to mesh axes.
Matmuls accumulate in float32 (``preferred_element_type``) and return the
compute dtype; norms, RoPE and softmax run in float32.

``Attention`` and ``Block`` optionally take a per-layer KV cache (keys and values
``[batch, cache_len, kv_heads, head_dim]``) and a write slot; they then write the
new keys/values into it, attend over the whole cache and also return the
updated cache. Without a cache they compute exactly what training uses.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any

# Scope names of a block's operations as compiled programs record them: an HLO instruction's
# ``op_name`` metadata is the path of ``jax.named_scope`` names and Flax module names it was
# traced under. The modules below open exactly these, so tools that attribute compiled
# operations to parts of the model (``elmjax.model.openelm.COMPONENT_SCOPES``) read them here.
ROPE = "rope"  # rotary angles and their application
ATTENTION_CORE = "attention_core"  # QK, mask, softmax, AV
KV_CACHE_WRITE = "kv_cache_write"  # writing new keys/values into the cache
ATTN, ATTN_NORM = "attn", "attn_norm"  # the attention sub-layer and its pre-norm
QKV_PROJ, OUT_PROJ = "qkv_proj", "out_proj"  # attention's weight matmuls
Q_NORM, K_NORM = "q_norm", "k_norm"  # per-head query/key RMSNorm
FFN, FFN_NORM = "ffn", "ffn_norm"  # the feed-forward sub-layer and its pre-norm


def normal_init(std: float, names: tuple):
    """A normal initialiser with logical axis names attached."""
    return nn.with_logical_partitioning(nn.initializers.normal(stddev=std), names)


def _dot(x, w, w_in_axis):
    """``x @ w`` contracting x's last axis with w's axis ``w_in_axis``, accumulated in float32.

    w is ``[in, out]`` (``w_in_axis=0``) or ``[out, in]`` (``w_in_axis=1``, e.g. the tied
    embedding used as the output head: contracting it in place avoids a transposed copy,
    which XLA's CPU backend otherwise makes on every call — a full read and write of the
    embedding per decode step). Leading axes of x are flattened first: the weight
    gradient is then one plain 2-D matmul instead of a contraction over two axes, which
    XLA's CPU backend runs ~1.3x slower.
    """
    y = lax.dot_general(x.reshape(-1, x.shape[-1]), w, (((1,), (w_in_axis,)), ((), ())),
                        preferred_element_type=jnp.float32)
    return y.reshape(*x.shape[:-1], w.shape[1 - w_in_axis])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _low_precision_matmul(x, w, dtype, out_dtype, x_dtype, w_dtype, w_in_axis):
    return _dot(x.astype(dtype), w.astype(dtype), w_in_axis).astype(out_dtype)


def _low_precision_fwd(x, w, dtype, out_dtype, x_dtype, w_dtype, w_in_axis):
    xc, wc = x.astype(dtype), w.astype(dtype)
    return _dot(xc, wc, w_in_axis).astype(out_dtype), (xc, wc)


def _low_precision_bwd(dtype, out_dtype, x_dtype, w_dtype, w_in_axis, residuals, ct):
    # Autodiff of a float32-accumulating matmul would run both backward matmuls on the
    # float32 cotangent (an f32 x bf16 product is an f32 matmul); casting the cotangent to
    # the compute dtype keeps all three matmuls in bfloat16 with float32 accumulation.
    xc, wc = residuals
    ct = ct.astype(dtype)
    dx = lax.dot_general(ct, wc, (((ct.ndim - 1,), (1 - w_in_axis,)), ((), ())),
                         preferred_element_type=jnp.float32)
    x2, ct2 = xc.reshape(-1, xc.shape[-1]), ct.reshape(-1, ct.shape[-1])
    a, b = (x2, ct2) if w_in_axis == 0 else (ct2, x2)  # dw in w's own layout
    dw = lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return dx.astype(x_dtype), dw.astype(w_dtype)


_low_precision_matmul.defvjp(_low_precision_fwd, _low_precision_bwd)


def matmul(x: jax.Array, w: jax.Array, dtype: Dtype, out_dtype: Dtype | None = None,
           w_in_axis: int = 0) -> jax.Array:
    """``x @ w`` over the last axis of x and axis ``w_in_axis`` of w (0: w is ``[in, out]``;
    1: w is ``[out, in]``), in compute ``dtype`` with float32 accumulation; the result is
    ``out_dtype`` (default ``dtype``).

    In float32 this is a plain ``dot_general``. In a lower precision the backward pass is
    written out so its matmuls also run in that precision (see ``_low_precision_bwd``).
    """
    dtype = jnp.dtype(dtype)
    out_dtype = dtype if out_dtype is None else jnp.dtype(out_dtype)
    if dtype == jnp.float32:
        return _dot(x.astype(dtype), w.astype(dtype), w_in_axis).astype(out_dtype)
    return _low_precision_matmul(x, w, dtype, out_dtype, jnp.dtype(x.dtype), jnp.dtype(w.dtype),
                                 w_in_axis)


class Linear(nn.Module):
    """Bias-free projection ``[..., in] -> [..., features]``; kernel ``[in, features]``."""

    features: int
    std: float
    names: tuple
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", normal_init(self.std, self.names),
                       (x.shape[-1], self.features), self.param_dtype)
        return matmul(x, w, self.dtype)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """``(x_f32 * rsqrt(mean(x_f32^2) + eps)).astype(x.dtype) * weight`` over the last axis."""
    xf = x.astype(jnp.float32)
    y = xf * lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)
    return y.astype(x.dtype) * weight.astype(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm with float32 statistics and a learned scale (initialised to 1)."""

    eps: float = 1e-6
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        w = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                       (x.shape[-1],), self.param_dtype)
        return rms_norm(x, w, self.eps)


def rope_angles(positions: jax.Array, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin of the rotary angles, float32 ``[batch, length, head_dim // 2]``."""
    with jax.named_scope(ROPE):
        return _rope_angles(positions, head_dim, base)


def _rope_angles(positions, head_dim, base):
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half (GPT-NeoX) rotary embedding, computed in float32.

    x: ``[batch, length, heads, head_dim]``; cos, sin: ``[batch, length, head_dim // 2]``.
    """
    with jax.named_scope(ROPE):
        return _apply_rope(x, cos, sin)


def _apply_rope(x, cos, sin):
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)
    return out.astype(x.dtype)


def attention_mask(q_segment_ids, kv_segment_ids, q_positions, kv_positions):
    """Boolean ``[batch, 1, q_len, kv_len]``: causal by position and within one segment."""
    causal = q_positions[:, :, None] >= kv_positions[:, None, :]
    same = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    return (causal & same)[:, None]


def cache_attention_mask(kv_valid: jax.Array, cache_index: jax.Array, q_len: int) -> jax.Array:
    """Boolean ``[batch, 1, q_len, cache_len]`` for queries written at slots ``cache_index + i``.

    kv_valid: ``[batch, cache_len]`` (slots holding real tokens, the new ones included).
    A query sees valid slots up to its own; a padding query sees only itself, so
    no row of the softmax is empty.
    """
    slots = jnp.arange(kv_valid.shape[1], dtype=jnp.int32)
    q_slots = cache_index + jnp.arange(q_len, dtype=jnp.int32)
    causal = slots[None, :] <= q_slots[:, None]
    mask = (kv_valid[:, None, :] | (slots[None, :] == q_slots[:, None])[None]) & causal[None]
    return mask[:, None]


def grouped_attention(q, k, v, mask, impl: str = "xla"):
    """Grouped-query attention without materialising repeated keys/values.

    q: ``[batch, q_len, q_heads, head_dim]``; k, v: ``[batch, kv_len, kv_heads, head_dim]``;
    mask: boolean ``[batch, 1, q_len, kv_len]``. Query head ``h`` attends with kv head
    ``h // (q_heads // kv_heads)``. Returns ``[batch, q_len, q_heads, head_dim]``.
    """
    with jax.named_scope(ATTENTION_CORE):
        return _grouped_attention(q, k, v, mask, impl)


def _grouped_attention(q, k, v, mask, impl):
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


class Attention(nn.Module):
    """Fused-QKV grouped-query attention with per-head RMSNorm on queries and keys."""

    cfg: Any  # FrozenConfigDict of the model section
    num_query_heads: int
    num_kv_heads: int

    @nn.compact
    def __call__(self, x, cos, sin, mask, kv_cache=None, cache_index=None):
        """x: ``[batch, length, model_dim]`` -> ``[batch, length, model_dim]``.

        cos, sin: ``[batch, length, head_dim // 2]``. Without ``kv_cache``, mask is
        ``[batch, 1, length, length]``. With ``kv_cache = (k, v)``, each
        ``[batch, cache_len, kv_heads, head_dim]``, the new keys/values are written at
        slots ``cache_index + [0, length)`` (int32 scalar), mask is
        ``[batch, 1, length, cache_len]`` over cache slots, and the result is
        ``(y, (k, v))`` with the updated cache.
        """
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        hd, nq, nkv = cfg.head_dim, self.num_query_heads, self.num_kv_heads
        std = cfg.init_std or cfg.model_dim ** -0.5
        b, t, _ = x.shape
        qkv = Linear((nq + 2 * nkv) * hd, std, ("embed", "qkv"), dtype, pdtype,
                     name=QKV_PROJ)(x)
        qkv = qkv.reshape(b, t, nq + 2 * nkv, hd)
        q, k, v = qkv[:, :, :nq], qkv[:, :, nq:nq + nkv], qkv[:, :, nq + nkv:]
        if cfg.normalize_qk:
            q = RMSNorm(cfg.norm_eps, pdtype, name=Q_NORM)(q)
            k = RMSNorm(cfg.norm_eps, pdtype, name=K_NORM)(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k_cache, v_cache = kv_cache
            start = (0, cache_index, 0, 0)
            with jax.named_scope(KV_CACHE_WRITE):
                k = lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
                v = lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
            kv_cache = (k, v)
        out = grouped_attention(q, k, v, mask, cfg.attention)
        out_std = std * (2 * cfg.num_layers) ** -0.5
        y = Linear(cfg.model_dim, out_std, ("heads", "embed"), dtype, pdtype,
                   name=OUT_PROJ)(out.reshape(b, t, nq * hd))
        return y if kv_cache is None else (y, kv_cache)


class FeedForward(nn.Module):
    """SwiGLU: ``proj_2(silu(a) * b)`` with ``a, b = split(proj_1(x))`` (gate first)."""

    cfg: Any
    ffn_dim: int

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        std = cfg.init_std or cfg.model_dim ** -0.5
        h = Linear(2 * self.ffn_dim, std, ("embed", "mlp"), dtype, pdtype, name="proj_1")(x)
        gate, up = jnp.split(h, 2, axis=-1)
        h = (jax.nn.silu(gate.astype(jnp.float32)) * up.astype(jnp.float32)).astype(dtype)
        out_std = std * (2 * cfg.num_layers) ** -0.5
        return Linear(cfg.model_dim, out_std, ("mlp", "embed"), dtype, pdtype, name="proj_2")(h)


class Block(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x))``, ``y = h + ffn(norm(h))``."""

    cfg: Any
    num_query_heads: int
    num_kv_heads: int
    ffn_dim: int

    @nn.compact
    def __call__(self, x, cos, sin, mask, kv_cache=None, cache_index=None):
        """x: ``[batch, length, model_dim]`` -> same shape (and the updated cache if given).

        See ``Attention`` for ``cos``/``sin``/``mask``/``kv_cache``/``cache_index``.
        """
        cfg = self.cfg
        pdtype = jnp.dtype(cfg.param_dtype)
        attn = Attention(cfg, self.num_query_heads, self.num_kv_heads, name=ATTN)
        a = RMSNorm(cfg.norm_eps, pdtype, name=ATTN_NORM)(x)
        if kv_cache is None:
            a = attn(a, cos, sin, mask)
        else:
            a, kv_cache = attn(a, cos, sin, mask, kv_cache, cache_index)
        h = x + a
        y = h + FeedForward(cfg, self.ffn_dim, name=FFN)(
            RMSNorm(cfg.norm_eps, pdtype, name=FFN_NORM)(h))
        return y if kv_cache is None else (y, kv_cache)
