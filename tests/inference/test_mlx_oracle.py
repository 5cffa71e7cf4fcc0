"""Greedy generation from a Hugging Face-layout checkpoint matches Apple's MLX implementation."""

import pathlib

import jax
import numpy as np
import pytest

import elmjax
from elmjax.interop import hf
from tests.conftest import tiny_model

PROMPTS = [[1, 17, 42, 99, 5, 63], [1, 7], [1, 120, 3, 64]]
NEW = 10


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = tiny_model()
    params = elmjax.init_params(cfg, jax.random.key(3))
    # Norm scales away from 1 so a mix-up of the norms would show.
    rng = np.random.default_rng(3)
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: (np.asarray(x) * rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
                      if "scale" in jax.tree_util.keystr(p) else np.asarray(x)), params)
    path = tmp_path_factory.mktemp("hf_greedy")
    hf.save_hf(path, cfg, params)
    return path


def test_greedy_tokens_match_mlx_lm(checkpoint):
    mx = pytest.importorskip("mlx.core")
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load_model

    model, _ = load_model(pathlib.Path(checkpoint))
    theirs = [[int(t) for t, _ in generate_step(mx.array(p), model, max_tokens=NEW)]
              for p in PROMPTS]
    cfg, params = hf.load_hf(checkpoint)
    ours = elmjax.generate(cfg, params, PROMPTS, NEW).to_lists()
    assert ours == theirs
