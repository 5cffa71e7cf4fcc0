"""A tiny OpenELM shared by the inference tests (compiled once per module)."""

import jax
import pytest

from elmjax.config import model_config
from elmjax.model.openelm import init_params


def tiny_model(**overrides):
    """3 layers with layer-wise scaling (2-4 query heads, 1-2 kv heads), vocab 256."""
    m = dict(num_layers=3, model_dim=64, head_dim=16, num_gqa_groups=2, ffn_dim_divisor=32,
             vocab_size=256, max_context_length=64)
    m.update(overrides)
    return model_config(**m)


@pytest.fixture(scope="session")
def tiny():
    """(model section, params) of the tiny model with random weights."""
    m = tiny_model()
    return m, init_params(m, jax.random.key(0))
