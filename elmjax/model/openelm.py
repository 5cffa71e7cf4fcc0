"""The OpenELM decoder: embed -> N heterogeneous blocks -> RMSNorm -> tied head.

Blocks are unrolled because their widths differ per layer (layer-wise scaling).
Parameters live outside the module; use ``init_params`` / ``forward``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from elmjax import parallel
from elmjax.model import attention, layers
from elmjax.model.layers import (EMBED_NAMES, Block, RMSNorm, attention_mask, cache_attention_mask,
                                 matmul, normal_init, rope_angles)
from elmjax.model.schedule import layer_schedule

_REMAT_POLICIES = {
    "full": None,  # save nothing inside a block
    "save_dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def model_section(config) -> ml_collections.FrozenConfigDict:
    """The (hashable) ``model`` section of a run config, or the section itself."""
    m = config.model if "model" in config else config
    return m if isinstance(m, ml_collections.FrozenConfigDict) else ml_collections.FrozenConfigDict(m)


class OpenELM(nn.Module):
    """tokens ``[batch, length]`` int32 -> float32 logits ``[batch, length, vocab]``."""

    cfg: Any  # FrozenConfigDict of the model section

    def setup(self):
        cfg = self.cfg
        block = Block
        if cfg.remat != "none":
            block = nn.remat(Block, policy=_REMAT_POLICIES[cfg.remat])
        self.token_embeddings = self.param(
            "token_embeddings",
            normal_init(cfg.init_std or cfg.model_dim ** -0.5, ("vocab", "embed")),
            (cfg.vocab_size, cfg.model_dim), jnp.dtype(cfg.param_dtype))
        self.layers = [block(cfg, s.num_query_heads, s.num_kv_heads, s.ffn_dim, name=f"layers_{i}")
                       for i, s in enumerate(layer_schedule(cfg))]
        self.norm = RMSNorm(cfg.norm_eps, jnp.dtype(cfg.param_dtype))  # scope FINAL_NORM

    def embed(self, tokens):
        """Token embeddings ``[batch, length, model_dim]`` in the compute dtype.

        Under an activation sharding the (compute-dtype) table is gathered whole first: a
        lookup in a vocab-sharded table would otherwise build full-batch partial sums and
        all-reduce them.
        """
        table = self.token_embeddings.astype(jnp.dtype(self.cfg.dtype))
        table = parallel.constrain(table, (None, None))
        return parallel.constrain(jnp.take(table, tokens, axis=0), EMBED_NAMES)

    def logits(self, h):
        """Final norm and the tied output head; float32 ``[batch, length, vocab]``.

        The head contracts the ``[vocab, embed]`` embedding along ``embed`` in place (no
        transposed copy of it per call).
        """
        return self.head(self.norm(h))

    def head(self, h):
        """The tied output head alone: normed ``[..., embed]`` -> float32 ``[..., vocab]``."""
        y = matmul(h, self.token_embeddings, h.dtype, jnp.float32, w_in_axis=1)
        return parallel.constrain(y, ("batch", "length", "vocab")) if y.ndim == 3 else y

    def __call__(self, tokens, segment_ids=None, positions=None, logits_at=None):
        """Logits float32 ``[batch, length, vocab]`` (``[batch, k, vocab]`` at ``logits_at``);
        see :func:`forward`."""
        h = self.hidden(tokens, segment_ids, positions)
        if logits_at is not None:  # only these positions: [batch, k] -> logits [batch, k, vocab]
            h = jnp.take_along_axis(h, logits_at[..., None], axis=1)
        return self.logits(h)

    def hidden(self, tokens, segment_ids=None, positions=None):
        """The last block's output ``[batch, length, model_dim]`` (before the final norm)."""
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        cos, sin = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_freq_constant)
        # Causality by index within the row; segments keep packed documents apart.
        # (splash applies the same rule inside the kernel, from the segment ids).
        mask = None
        if attention.resolve(self.cfg.attention, t) != "splash":
            idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
            mask = attention_mask(segment_ids, segment_ids, idx, idx)
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, None, None, segment_ids)
        return h

    def decode(self, tokens, positions, token_valid, kv_caches, kv_valid, cache_index,
               all_logits=False):
        """Runs ``tokens`` against a KV cache, writing them at slots ``cache_index + [0, length)``.

        tokens, positions: int ``[batch, length]``; token_valid: bool ``[batch, length]``
        (False for padding); kv_caches: per layer ``(k, v)``, each
        ``[batch, cache_len, kv_heads_i, head_dim]``; kv_valid: bool ``[batch, cache_len]``;
        cache_index: int32 scalar. Returns ``(logits, kv_caches, kv_valid)`` with float32
        logits ``[batch, length, vocab]`` (``[batch, 1, vocab]`` for the last slot
        unless ``all_logits``) and the updated caches.
        """
        t = tokens.shape[1]
        kv_valid = jax.lax.dynamic_update_slice(kv_valid, token_valid, (0, cache_index))
        mask = cache_attention_mask(kv_valid, cache_index, t)
        cos, sin = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_freq_constant)
        h = self.embed(tokens)
        new_caches = []
        for layer, kv in zip(self.layers, kv_caches):
            h, kv = layer(h, cos, sin, mask, kv, cache_index)
            new_caches.append(kv)
        if not all_logits:
            h = h[:, -1:]
        return self.logits(h), tuple(new_caches), kv_valid


# Scope names of the model's own operations in compiled programs (see ``layers.ROPE``): Flax
# names a method's scope ``Class.method`` and a ``setup`` submodule by its attribute.
EMBED = f"{OpenELM.__name__}.{OpenELM.embed.__name__}"
LOGITS = f"{OpenELM.__name__}.{OpenELM.logits.__name__}"  # final norm and the tied head
FINAL_NORM = "norm"
TIED_EMBEDDING = "token_embeddings"  # the parameter both ``embed`` and the head use

ATTENTION_CORE = "attention core (QK, softmax, AV)"
# The model's parts and the scopes whose operations belong to each, in report order. An
# operation belongs to the first part that one of its scopes names.
COMPONENT_SCOPES = (
    ("RoPE", (layers.ROPE,)),
    ("q/k RMSNorm", (layers.Q_NORM, layers.K_NORM)),
    ("KV cache writes", (layers.KV_CACHE_WRITE,)),
    (ATTENTION_CORE, (layers.ATTENTION_CORE,)),
    ("RMSNorm (attn, ffn, final)", (layers.ATTN_NORM, layers.FFN_NORM, FINAL_NORM)),
    ("attention projections", (layers.QKV_PROJ, layers.OUT_PROJ)),
    ("FFN", (layers.FFN,)),
    ("LM head", (LOGITS,)),
    ("embedding", (EMBED,)),
)
# Which part's weights a matmul uses, from the scope of the value it multiplies: a
# sub-layer's input comes from its pre-norm or from inside it.
SUBLAYER_SCOPES = (
    ((LOGITS,), "LM head"),
    ((layers.FFN, layers.FFN_NORM), "FFN"),
    ((layers.ATTN, layers.ATTN_NORM), "attention projections"),
)


def build(config) -> OpenELM:
    """The Flax module for a run config (or its model section)."""
    return OpenELM(model_section(config))


def _init_module(config) -> OpenELM:
    """The module to initialise (trace on a length-1 dummy): attention ``xla``, since the
    parameters do not depend on it and kernels such as splash need real lengths."""
    m = ml_collections.ConfigDict(model_section(config))
    m.attention = "xla"
    return build(m)


def init_params(config, rng: jax.Array) -> dict:
    """Initialises float32 (``model.param_dtype``) parameters, unboxed, as a nested dict.

    Initialisation follows corenet: every weight ``N(0, model_dim^-0.5)``, the output
    projections ``out_proj`` and ``proj_2`` scaled by ``(2 * num_layers)^-0.5``, norms 1.
    """
    module = _init_module(config)
    dummy = jnp.zeros((1, 1), jnp.int32)
    return nn.unbox(jax.jit(module.init)(rng, dummy)["params"])


def logical_axes(config) -> dict:
    """The parameter tree with a ``PartitionSpec`` of logical axis names at each leaf."""
    module = _init_module(config)
    dummy = jnp.zeros((1, 1), jnp.int32)
    boxed = jax.eval_shape(lambda: module.init(jax.random.key(0), dummy))["params"]
    return nn.get_partition_spec(boxed)


def forward(config, params, tokens, segment_ids=None, positions=None,
            logits_at=None) -> jax.Array:
    """float32 logits ``[batch, length, vocab]`` for int tokens ``[batch, length]``.

    ``segment_ids`` ``[batch, length]`` (packed documents; tokens only attend within
    their segment) and ``positions`` ``[batch, length]`` (RoPE positions, restarting
    per document) are optional; by default one document starting at position 0.
    ``logits_at`` (int ``[batch, k]``) computes the head only at those positions and
    returns ``[batch, k, vocab]`` (scoring needs only the continuation's logits).
    """
    return build(config).apply({"params": params}, tokens, segment_ids, positions, logits_at)


def forward_hidden(config, params, tokens, segment_ids=None, positions=None) -> jax.Array:
    """Final-normed hidden states ``[batch, length, model_dim]`` (compute dtype): the input
    of the output head (see :func:`head`); arguments as in :func:`forward`."""
    module = build(config)
    h = module.apply({"params": params}, tokens, segment_ids, positions, method=OpenELM.hidden)
    return module.apply({"params": params}, h, method=lambda m, x: m.norm(x))


def head(config, params, h) -> jax.Array:
    """The tied output head: normed ``[..., model_dim]`` -> float32 logits ``[..., vocab]``."""
    return build(config).apply({"params": params}, h, method=OpenELM.head)
