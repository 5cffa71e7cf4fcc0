"""Model behaviour: shapes, causality, segment masking, attention paths, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import elmjax
from elmjax.model.schedule import layer_schedule
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def model():
    cfg = tiny_model()
    params = elmjax.init_params(cfg, jax.random.key(0))
    fwd = jax.jit(lambda p, t, s=None, pos=None: elmjax.forward(cfg, p, t, s, pos))
    return cfg, params, fwd


def test_parameter_shapes_follow_the_schedule(model):
    cfg, params, _ = model
    for i, s in enumerate(layer_schedule(cfg)):
        layer = params[f"layers_{i}"]
        assert layer["attn"]["qkv_proj"]["kernel"].shape == (
            64, (s.num_query_heads + 2 * s.num_kv_heads) * 16)
        assert layer["ffn"]["proj_1"]["kernel"].shape == (64, 2 * s.ffn_dim)
    heads = [s.num_query_heads for s in layer_schedule(cfg)]
    assert len(set(heads)) > 1, "the tiny config must exercise per-layer head counts"
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_init_statistics_follow_corenet(model):
    _, params, _ = model
    emb = np.asarray(params["token_embeddings"])
    assert abs(emb.std() - 64 ** -0.5) < 0.02
    out = np.asarray(params["layers_0"]["ffn"]["proj_2"]["kernel"])
    assert abs(out.std() - 64 ** -0.5 * 6 ** -0.5) < 0.01
    assert np.all(np.asarray(params["norm"]["scale"]) == 1.0)


def test_causality(model):
    cfg, params, fwd = model
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, 128)
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % 128)
    a, b = fwd(params, tokens), fwd(params, changed)
    assert a.shape == (2, 12, 128) and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a[:, :7]), np.asarray(b[:, :7]))
    assert not np.allclose(a[:, 7:], b[:, 7:])


def test_packed_documents_match_each_alone(model):
    _, params, fwd = model
    d1 = jax.random.randint(jax.random.key(2), (1, 5), 0, 128)
    d2 = jax.random.randint(jax.random.key(3), (1, 7), 0, 128)
    packed = jnp.concatenate([d1, d2], axis=1)
    seg = jnp.array([[1] * 5 + [2] * 7])
    pos = jnp.array([list(range(5)) + list(range(7))])
    out = fwd(params, packed, seg, pos)
    np.testing.assert_allclose(out[:, :5], fwd(params, d1), atol=1e-5)
    np.testing.assert_allclose(out[:, 5:], fwd(params, d2), atol=1e-5)


@pytest.mark.parametrize("impl", ["einsum"])
def test_attention_implementations_agree(model, impl):
    cfg, params, fwd = model
    other = tiny_model(attention=impl)
    tokens = jax.random.randint(jax.random.key(4), (2, 9), 0, 128)
    seg = jnp.array([[1] * 4 + [2] * 5, [1] * 9])
    np.testing.assert_allclose(elmjax.forward(other, params, tokens, seg),
                               fwd(params, tokens, seg), atol=1e-5)


def test_bfloat16_compute_stays_close_to_float32(model):
    _, params, fwd = model
    bf = tiny_model(dtype="bfloat16")
    tokens = jax.random.randint(jax.random.key(5), (2, 16), 0, 128)
    ref = np.asarray(fwd(params, tokens))
    out = elmjax.forward(bf, params, tokens)
    assert out.dtype == jnp.float32
    # bfloat16 has 8 mantissa bits: relative error ~2^-8 per op; logits here are O(1).
    err = np.abs(np.asarray(out) - ref).max()
    assert err < 0.05 * np.abs(ref).max() + 0.05, err
    assert np.mean(np.argmax(out, -1) == np.argmax(ref, -1)) > 0.9


def test_remat_policies_give_same_loss_and_grads(model):
    cfg, params, _ = model
    tokens = jax.random.randint(jax.random.key(6), (2, 8), 0, 128)

    def loss(c):
        return jax.grad(lambda p: jnp.mean(elmjax.forward(c, p, tokens) ** 2))(params)

    base = loss(cfg)
    for policy in ("full", "save_dots"):
        g = loss(tiny_model(remat=policy))
        for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(g)):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_bfloat16_gradients_follow_float32(model):
    """The hand-written bfloat16 backward pass gives the float32 gradients to bf16 precision."""
    cfg, params, _ = model
    bf = tiny_model(dtype="bfloat16")
    tokens = jax.random.randint(jax.random.key(7), (2, 16), 0, 128)

    def grads(c):
        return jax.grad(lambda p: jnp.mean(jax.nn.log_softmax(elmjax.forward(c, p, tokens))[..., 0]))(params)

    g32, g16 = grads(cfg), grads(bf)
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16)):
        assert b.dtype == jnp.float32
        scale = float(jnp.max(jnp.abs(a))) + 1e-12
        assert float(jnp.max(jnp.abs(a - b))) < 0.05 * scale


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_against_a_weight_stored_out_by_in(dtype):
    """``w_in_axis=1`` (the tied head's layout) = ``x @ w.T``, values and gradients."""
    from elmjax.model.layers import matmul

    kx, kw, kc = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, (2, 5, 24))
    w = jax.random.normal(kw, (40, 24))  # [out, in]
    ct = jax.random.normal(kc, (2, 5, 40))

    def loss(fn, x, w):
        return jnp.sum(fn(x, w) * ct)

    direct = lambda x, w: matmul(x, w, dtype, jnp.float32, w_in_axis=1)
    transposed = lambda x, w: matmul(x, w.T, dtype, jnp.float32)
    # Same products, possibly summed in another order by the backend's kernels.
    np.testing.assert_allclose(direct(x, w), transposed(x, w), rtol=1e-5, atol=1e-5)
    g_direct = jax.grad(lambda x, w: loss(direct, x, w), argnums=(0, 1))(x, w)
    g_transposed = jax.grad(lambda x, w: loss(transposed, x, w), argnums=(0, 1))(x, w)
    for a, b in zip(g_direct, g_transposed):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
