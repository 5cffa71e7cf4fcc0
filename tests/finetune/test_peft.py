"""LoRA / DoRA as parameter transforms: identity at init, exact merging, counts, DoRA's formula,
dropout, and a train step that moves only the adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from elmjax import parallel
from elmjax.model.schedule import layer_schedule, param_count
from elmjax.model import peft
from elmjax.model.openelm import forward, init_params
from elmjax.train import optimizer as opt_lib
from elmjax.train import state as state_lib
from elmjax.train.step import make_train_step
from tests.finetune.conftest import peft_run_config

TOKENS = np.random.default_rng(0).integers(0, 128, (2, 16)).astype(np.int32)
_forward = jax.jit(forward, static_argnums=0)


def _model_cfg(cfg):
    from elmjax.model.openelm import model_section

    return model_section(cfg)


def logits(cfg, params):
    return np.asarray(_forward(_model_cfg(cfg), params, TOKENS))


def trained_adapters(cfg, base, seed=1):
    """Adapters with non-zero B (and perturbed magnitudes), as after some training."""
    ad = peft.init_adapters(cfg, base, jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def perturb(path, x):
        name = path[-1].key
        if name == "lora_b":
            return jnp.asarray(rng.normal(0, 0.05, x.shape), jnp.float32)
        if name == "magnitude":
            return x * jnp.asarray(rng.uniform(0.8, 1.2, x.shape), jnp.float32)
        return x

    return jax.tree_util.tree_map_with_path(perturb, ad)


@pytest.fixture(scope="module")
def base():
    return init_params(peft_run_config(), jax.random.key(0))


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_fresh_adapter_leaves_outputs_unchanged(base, method):
    cfg = peft_run_config(method)
    ad = peft.init_adapters(cfg, base, jax.random.key(3))
    assert float(jnp.abs(ad["layers_0"]["attn"]["qkv_proj"]["lora_a"]).sum()) > 0  # A is random
    np.testing.assert_allclose(logits(cfg, peft.apply(cfg, base, ad)), logits(cfg, base),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_merged_weights_give_the_same_logits_as_base_plus_adapter(base, method):
    cfg = peft_run_config(method)
    ad = trained_adapters(cfg, base)
    adapted = logits(cfg, peft.apply(cfg, base, ad))
    assert np.abs(adapted - logits(cfg, base)).max() > 1e-2  # the adapter does something
    merged = peft.merge(cfg, base, ad)
    assert all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in jax.tree.leaves(merged))
    assert jax.tree.structure(merged) == jax.tree.structure(base)
    np.testing.assert_allclose(logits(cfg, merged), adapted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_trainable_parameter_count_equals_the_formula(method):
    cfg = peft_run_config(method, rank=4)
    m, r = cfg.model, 4
    d, hd, expected = m.model_dim, m.head_dim, 0
    expected += r * (m.vocab_size + d) + (d if method == "dora" else 0)  # token embeddings
    for s in layer_schedule(m):
        for n_in, n_out in [(d, (s.num_query_heads + 2 * s.num_kv_heads) * hd),
                            (s.num_query_heads * hd, d), (d, 2 * s.ffn_dim), (s.ffn_dim, d)]:
            expected += r * (n_in + n_out) + (n_out if method == "dora" else 0)
    assert peft.trainable_count(cfg) == expected
    params = jax.eval_shape(lambda: state_lib.train_params(cfg, jax.random.key(0)))
    mask = peft.trainable_mask(params)
    counted = sum(x.size for x, t in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if t)
    assert counted == expected
    assert sum(x.size for x in jax.tree.leaves(params["base"])) == param_count(cfg)


def test_dora_update_matches_a_direct_evaluation_of_its_formula(base):
    cfg = peft_run_config("dora", rank=4)
    ad = trained_adapters(cfg, base, seed=7)
    got = np.asarray(peft.apply(cfg, base, ad)["layers_1"]["ffn"]["proj_1"]["kernel"])
    w = np.asarray(base["layers_1"]["ffn"]["proj_1"]["kernel"], np.float64)  # [in, out]
    a = ad["layers_1"]["ffn"]["proj_1"]
    s = cfg.peft.alpha / cfg.peft.rank
    v = w + s * np.asarray(a["lora_a"], np.float64) @ np.asarray(a["lora_b"], np.float64)
    column_norm = np.sqrt((v ** 2).sum(axis=0, keepdims=True))  # over the input axis: [1, out]
    want = np.asarray(a["magnitude"], np.float64)[None, :] * v / column_norm
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the magnitude starts at the base's column norms
    fresh = peft.init_adapters(cfg, base, jax.random.key(0))["layers_1"]["ffn"]["proj_1"]["magnitude"]
    np.testing.assert_allclose(np.asarray(fresh), np.linalg.norm(w, axis=0), rtol=1e-5)


def test_dropout_drops_rows_of_a_only_in_training(base):
    cfg = peft_run_config("lora", rank=4, dropout=0.5, targets="qkv_proj")
    ad = trained_adapters(cfg, base)
    plain = peft.apply(cfg, base, ad)
    np.testing.assert_array_equal(np.asarray(peft.apply(cfg, base, ad, jax.random.key(0))["layers_0"]
                                             ["attn"]["qkv_proj"]["kernel"]),
                                  np.asarray(plain["layers_0"]["attn"]["qkv_proj"]["kernel"]))
    dropped = peft.apply(cfg, base, ad, jax.random.key(0), train=True)
    w = np.asarray(base["layers_0"]["attn"]["qkv_proj"]["kernel"])
    delta = np.asarray(dropped["layers_0"]["attn"]["qkv_proj"]["kernel"]) - w
    full = np.asarray(plain["layers_0"]["attn"]["qkv_proj"]["kernel"]) - w
    zero_rows = np.all(np.abs(delta) < 1e-7, axis=1)
    assert 0 < zero_rows.sum() < len(zero_rows)  # some input features dropped, not all
    np.testing.assert_allclose(delta[~zero_rows], 2.0 * full[~zero_rows], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="rng"):
        peft.apply(cfg, base, ad, train=True)


def test_dora_train_step_on_a_bfloat16_base_moves_adapters_only_and_lowers_the_loss():
    base_dtype = "bfloat16"
    cfg = peft_run_config("dora", rank=4, dropout=0.1)
    cfg.peft.base_dtype = base_dtype
    mesh = parallel.make_mesh(cfg, devices=jax.devices()[:1])
    template = jax.eval_shape(lambda: state_lib.train_params(cfg, jax.random.key(0)))
    tx = opt_lib.make_optimizer(cfg, peft.trainable_mask(template))
    state, shardings = state_lib.init_state(cfg, mesh, tx, jax.random.key(0))
    assert {x.dtype for x in jax.tree.leaves(state["params"]["base"])} == {jnp.dtype(base_dtype)}
    before = jax.device_get(state["params"])
    step = jax.jit(make_train_step(cfg, tx, peft.train_transform(cfg)))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 128, (4, 17)).astype(np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "segment_ids": np.ones((4, 16), np.int32),
             "positions": np.tile(np.arange(16, dtype=np.int32), (4, 1)),
             "loss_mask": np.ones((4, 16), np.float32)}
    losses = []
    for _ in range(6):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert losses[-1] < losses[0] - 0.3, losses
    after = jax.device_get(state["params"])
    for a, b in zip(jax.tree.leaves(before["base"]), jax.tree.leaves(after["base"])):
        np.testing.assert_array_equal(a, b)
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before["adapters"]),
                                                       jax.tree.leaves(after["adapters"]))]
    assert all(moved)
