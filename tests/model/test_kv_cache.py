"""The cached model path computes the same logits as ``forward``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from elmjax.model.schedule import layer_schedule
from elmjax.inference.cache import extend, init_cache
from elmjax.model.openelm import forward, init_params, model_section
from tests.conftest import tiny_model

CFG = model_section(tiny_model())


@pytest.fixture(scope="module")
def model():
    params = init_params(CFG, jax.random.key(1))
    tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, CFG.vocab_size)
    return params, tokens, jax.jit(forward, static_argnums=0)(model_section(CFG), params, tokens)


def test_cache_shapes_follow_the_layer_schedule():
    cache = init_cache(CFG, 2, 20)
    assert len(cache.kv) == CFG.num_layers
    for (k, v), s in zip(cache.kv, layer_schedule(CFG)):
        assert k.shape == v.shape == (2, 20, s.num_kv_heads, CFG.head_dim)
    assert len({k.shape for k, _ in cache.kv}) > 1  # layer-wise scaling: shapes differ


def test_prefill_then_single_steps_match_forward(model):
    params, tokens, ref = model
    run = jax.jit(lambda p, c, t, pos: extend(CFG, p, c, t, pos, all_logits=True))
    cache = init_cache(CFG, 2, 16)
    pos = jnp.broadcast_to(jnp.arange(12), (2, 12))
    logits, cache = run(params, cache, tokens[:, :8], pos[:, :8])
    np.testing.assert_allclose(logits, ref[:, :8], atol=1e-4, rtol=1e-4)
    for i in range(8, 12):
        logits, cache = run(params, cache, tokens[:, i:i + 1], pos[:, i:i + 1])
        np.testing.assert_allclose(logits[:, 0], ref[:, i], atol=1e-4, rtol=1e-4)
    assert int(cache.index) == 12 and bool(cache.valid[:, :12].all())


def test_left_padding_keeps_positions_and_masks(model):
    params, tokens, ref = model
    pad = 5
    padded = jnp.concatenate([jnp.zeros((2, pad), tokens.dtype), tokens], axis=1)
    valid = jnp.arange(pad + 12)[None].repeat(2, 0) >= pad
    pos = jnp.maximum(jnp.arange(pad + 12) - pad, 0)[None].repeat(2, 0)
    run = jax.jit(lambda p, c, t, q, v: extend(CFG, p, c, t, q, v, all_logits=True))
    logits, _ = run(params, init_cache(CFG, 2, pad + 12), padded, pos, valid)
    np.testing.assert_allclose(logits[:, pad:], ref, atol=1e-4, rtol=1e-4)
    assert bool(jnp.isfinite(logits).all())


def test_last_logits_only(model):
    params, tokens, ref = model
    pos = jnp.broadcast_to(jnp.arange(12), (2, 12))
    logits, _ = jax.jit(lambda p, c, t, q: extend(CFG, p, c, t, q))(
        params, init_cache(CFG, 2, 12), tokens, pos)
    assert logits.shape == (2, CFG.vocab_size)
    np.testing.assert_allclose(logits, ref[:, -1], atol=1e-4, rtol=1e-4)
