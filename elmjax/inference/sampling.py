"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus).

All functions are pure and jit-friendly; randomness comes only from the explicit
``jax.random`` key. ``Sampler`` is hashable so it can be a static jit argument.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# The ``jax.named_scope`` sampling runs under (how compiled programs' metadata names it).
SCOPE = "sampling"


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How to pick tokens.

    temperature: 0 means greedy (argmax); otherwise logits are divided by it.
    top_k: keep only the k most likely tokens (0: no limit).
    top_p: keep the smallest set of most likely tokens whose probability reaches
      ``top_p`` (1.0: no limit). Applied after top-k.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def filtered_logits(logits: jax.Array, sampler: Sampler) -> jax.Array:
    """float32 ``[batch, vocab]`` logits scaled by temperature, -inf outside top-k / top-p.

    The tokens left finite are exactly the support ``sample`` draws from.
    """
    logits = logits.astype(jnp.float32)
    if not sampler.greedy:
        logits = logits / sampler.temperature
    vocab = logits.shape[-1]
    neg_inf = jnp.float32(-jnp.inf)
    k = sampler.top_k if 0 < sampler.top_k < vocab else 0
    if k == 0 and sampler.top_p >= 1.0:
        return logits
    if k:
        top_vals, _ = jax.lax.top_k(logits, k)  # sorted, descending
    else:
        top_vals = -jnp.sort(-logits, axis=-1)
    threshold = top_vals[:, -1:]
    if sampler.top_p < 1.0:
        probs = jax.nn.softmax(top_vals, axis=-1)
        # Keep a token while the mass before it is below top_p (the first is always kept).
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.sum(mass_before < sampler.top_p, axis=-1, keepdims=True)
        threshold = jnp.take_along_axis(top_vals, kept - 1, axis=-1)
    return jnp.where(logits >= threshold, logits, neg_inf)


def sample(logits: jax.Array, key: jax.Array, sampler: Sampler) -> jax.Array:
    """int32 ``[batch]`` next tokens for float ``[batch, vocab]`` logits.

    Ties at the top-k / top-p boundary keep every tied token.
    """
    with jax.named_scope(SCOPE):
        return _sample(logits, key, sampler)


def _sample(logits, key, sampler):
    if sampler.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, filtered_logits(logits, sampler), axis=-1).astype(jnp.int32)
