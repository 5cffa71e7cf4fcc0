"""Splash attention (Pallas, interpret mode on CPU) against the dense ``xla`` path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from elmjax import parallel
from elmjax.model import attention
from elmjax.model.layers import attention_mask, grouped_attention

B, T, NQ, NKV, D = 2, 256, 4, 2, 32


@pytest.fixture(scope="module")
def inputs():
    kq, kk, kv, kc = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(kq, (B, T, NQ, D), jnp.float32)
    k = jax.random.normal(kk, (B, T, NKV, D), jnp.float32)
    v = jax.random.normal(kv, (B, T, NKV, D), jnp.float32)
    # Packed documents: row 0 holds three, row 1 two (boundaries off the 128-token blocks).
    seg = np.ones((B, T), np.int32)
    seg[0, 70:] = 2
    seg[0, 200:] = 3
    seg[1, 150:] = 2
    ct = jax.random.normal(kc, (B, T, NQ, D), jnp.float32)
    return q, k, v, jnp.asarray(seg), ct


def _dense(q, k, v, seg):
    idx = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    return grouped_attention(q, k, v, attention_mask(seg, seg, idx, idx), "xla")


def _splash(q, k, v, seg):
    return grouped_attention(q, k, v, None, "splash", seg)


def _value_and_grads(fn, q, k, v, seg, ct):
    out, vjp = jax.vjp(lambda a, b, c: fn(a, b, c, seg), q, k, v)
    return out, vjp(ct)


@pytest.fixture(scope="module")
def dense_result(inputs):
    q, k, v, seg, ct = inputs
    return _value_and_grads(_dense, q, k, v, seg, ct)


def _check(result, reference):
    (out, grads), (ref, ref_grads) = result, reference
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=1e-5)
    for g, r, name in zip(grads, ref_grads, "qkv"):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")


def test_splash_matches_xla_with_gqa_and_packed_segments(inputs, dense_result):
    q, k, v, seg, ct = inputs
    _check(jax.jit(lambda *a: _value_and_grads(_splash, *a))(q, k, v, seg, ct), dense_result)


def test_splash_under_activation_sharding_runs_per_device(inputs, dense_result):
    """Batch over data+fsdp and kv heads over tensor (2 kv heads on 2 devices): shard_map."""
    q, k, v, seg, ct = inputs
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 2, 2), parallel.MESH_AXES)
    acts = parallel.ActivationSharding(mesh, parallel.parse_rules(parallel.DEFAULT_RULES))

    def run(*a):
        with parallel.activation_sharding(acts):
            return _value_and_grads(_splash, *a)

    assert "shard_map" in str(jax.make_jaxpr(run)(q, k, v, seg, ct))
    _check(jax.jit(run)(q, k, v, seg, ct), dense_result)


def test_auto_is_splash_only_on_tpu():
    assert attention.resolve("auto", 2048) == ("splash" if jax.default_backend() == "tpu" else "xla")
    assert attention.resolve("splash", 2048, cached=True) == "xla"
    assert attention.splash_block(2048, False) == 512
    assert attention.splash_block(200, False) is None and attention.splash_block(200, True) == 200


def test_init_does_not_depend_on_the_attention_implementation():
    """Initialisation traces a length-1 input, which the splash kernel cannot take (found by
    ``elmjax plan --search``): the parameters must come out the same for every implementation."""
    import elmjax
    from tests.conftest import tiny_model

    want = elmjax.init_params(tiny_model(attention="xla"), jax.random.key(3))
    got = elmjax.init_params(tiny_model(attention="splash"), jax.random.key(3))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), want, got))
