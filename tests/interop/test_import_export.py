"""`elmjax import` / `elmjax export`: byte-identical tensors, MLX agreement, corenet .pt files."""

import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

import elmjax
from elmjax import cli
from elmjax.interop import hf
from elmjax.train.state import load_params
from tests.conftest import tiny_model
from tests.interop.test_hf import random_params


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    cfg = tiny_model()
    hf.save_hf(root / "hf", cfg, random_params(cfg, 3))
    assert cli.main(["import", "--hf", str(root / "hf"), "--workdir", str(root / "run")]) == 0
    return root


def test_import_then_export_is_byte_identical(imported):
    out = imported / "exported"
    assert cli.main(["export", "--workdir", str(imported / "run"), "--out", str(out)]) == 0
    a, b = load_file(imported / "hf" / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (imported / "hf" / "config.json").read_text())


def test_exported_checkpoint_matches_mlx(imported):
    mx = pytest.importorskip("mlx.core")
    from mlx_lm.utils import load_model

    out = imported / "exported_mlx"
    assert cli.main(["export", "--workdir", str(imported / "run"), "--out", str(out)]) == 0
    cfg, params = load_params(imported / "run")
    tokens = np.random.default_rng(1).integers(0, cfg.model.vocab_size, (1, 17))
    model, _ = load_model(pathlib.Path(out))
    np.testing.assert_allclose(np.asarray(elmjax.forward(cfg, params, tokens)),
                               np.array(model(mx.array(tokens))), atol=1e-4)


def test_bfloat16_export(imported):
    out = imported / "exported_bf16"
    assert cli.main(["export", "--workdir", str(imported / "run"), "--out", str(out),
                     "--dtype", "bfloat16"]) == 0
    tensors = load_file(out / "model.safetensors")
    assert all(str(t.dtype) == "bfloat16" for t in tensors.values())


def test_import_refuses_a_non_empty_workdir(imported, capsys):
    assert cli.main(["import", "--hf", str(imported / "hf"), "--workdir", str(imported / "run")]) == 2
    assert "already has checkpoints" in capsys.readouterr().err


def test_corenet_checkpoint_import(tmp_path):
    torch = pytest.importorskip("torch")
    cfg = tiny_model(vocab_size=136)
    params = random_params(cfg, 5)
    state = {}
    for name, path, transpose in hf.tensor_map(cfg.model):
        x = params
        for k in path:
            x = x[k]
        x = np.asarray(x)
        state[name.removeprefix("transformer.")] = torch.from_numpy(np.ascontiguousarray(x.T if transpose else x))
    torch.save({"model": state}, tmp_path / "corenet.pt")
    from elmjax.interop.corenet import load_corenet

    loaded = load_corenet(tmp_path / "corenet.pt", cfg.model)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    torch.save({"model": state, "evil": object()}, tmp_path / "pickled.pt")
    with pytest.raises(hf.CheckpointFormatError, match="weights-only"):
        load_corenet(tmp_path / "pickled.pt", cfg.model)
