"""Hugging Face layout round trips and Apple's MLX implementation as the numerical oracle."""

import json
import pathlib

import jax
import numpy as np
import pytest

import elmjax
from elmjax.interop import hf
from tests.conftest import tiny_model

# Several shapes: GQA with per-layer head counts, plain multi-head, odd sizes.
SHAPES = {
    "gqa_layerwise": dict(),
    "multi_head": dict(num_gqa_groups=1, num_layers=2, qkv_multipliers=(1.0, 1.0)),
    "odd_sizes": dict(num_layers=4, model_dim=48, head_dim=12, num_gqa_groups=3,
                      qkv_multipliers=(0.5, 1.5), ffn_multipliers=(0.7, 3.1),
                      ffn_dim_divisor=8, vocab_size=101),
}


def random_params(cfg, seed):
    """Random weights, including norm scales far from 1 so the norms are exercised."""
    params = elmjax.init_params(cfg, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: (np.asarray(x) * rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
                         if "scale" in jax.tree_util.keystr(path) else np.asarray(x)), params)


@pytest.fixture(scope="module", params=sorted(SHAPES))
def checkpoint(request, tmp_path_factory):
    cfg = tiny_model(**SHAPES[request.param])
    params = random_params(cfg, seed=len(request.param))
    path = tmp_path_factory.mktemp(request.param)
    hf.save_hf(path, cfg, params)
    return cfg, params, path


def test_save_load_round_trip_is_exact(checkpoint):
    cfg, params, path = checkpoint
    cfg2, params2 = hf.load_hf(path)
    assert hf.config_to_hf(cfg2.model) == hf.config_to_hf(cfg.model)
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(a, b)


def test_config_json_has_apples_keys(checkpoint):
    cfg, _, path = checkpoint
    data = json.loads((path / "config.json").read_text())
    for key in ("model_type", "architectures", "num_transformer_layers", "model_dim", "head_dim",
                "num_gqa_groups", "num_query_heads", "num_kv_heads", "ffn_multipliers",
                "qkv_multipliers", "ffn_dim_divisor", "ffn_with_glu", "activation_fn_name",
                "normalization_layer_name", "normalize_qk_projections",
                "share_input_output_layers", "vocab_size", "max_context_length",
                "rope_freq_constant", "rope_max_length", "initializer_range", "bos_token_id",
                "eos_token_id", "torch_dtype", "transformers_version", "use_cache"):
        assert key in data, key
    assert len(data["num_query_heads"]) == cfg.model.num_layers


def test_logits_match_apples_mlx_implementation(checkpoint):
    mx = pytest.importorskip("mlx.core")
    from mlx_lm.utils import load_model

    cfg, params, path = checkpoint
    model, _ = load_model(pathlib.Path(path))
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, (2, 23))
    ours = np.asarray(elmjax.forward(cfg, params, tokens))
    theirs = np.array(model(mx.array(tokens)).astype(mx.float32))
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_bfloat16_and_sharded_save(tmp_path):
    cfg = tiny_model()
    params = random_params(cfg, seed=7)
    names = hf.save_hf(tmp_path, cfg, params, dtype="bfloat16", max_shard_bytes=20_000)
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) > 1 and "model.safetensors.index.json" in names
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    _, params2 = hf.load_hf(tmp_path)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_allclose(a, b, rtol=2 ** -8, atol=1e-6)


def test_wrong_shape_names_the_tensor(tmp_path):
    from safetensors.numpy import load_file, save_file

    cfg = tiny_model()
    hf.save_hf(tmp_path, cfg, random_params(cfg, 1))
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["transformer.layers.1.ffn.proj_2.weight"] = np.zeros((3, 3), np.float32)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(hf.CheckpointFormatError, match=r"transformer\.layers\.1\.ffn\.proj_2"):
        hf.load_hf(tmp_path)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    cfg = tiny_model()
    hf.save_hf(tmp_path, cfg, random_params(cfg, 1))
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["transformer.layers.2.attn.k_norm.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(hf.CheckpointFormatError, match=r"layers\.2\.attn\.k_norm"):
        hf.load_hf(tmp_path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    cfg = tiny_model()
    hf.save_hf(tmp_path, cfg, random_params(cfg, 1))
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(hf.CheckpointFormatError, match="model.safetensors"):
        hf.load_hf(tmp_path)


def test_unsupported_config_is_refused(tmp_path):
    cfg = tiny_model()
    hf.save_hf(tmp_path, cfg, random_params(cfg, 1))
    data = json.loads((tmp_path / "config.json").read_text())
    data["ffn_with_glu"] = False
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(hf.CheckpointFormatError, match="ffn_with_glu"):
        hf.load_hf(tmp_path)
