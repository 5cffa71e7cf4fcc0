"""Fixtures shared by the inference tests."""

import jax
import pytest

import elmjax
from elmjax.model.openelm import model_section
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def lm():
    """(model section, params) of a tiny model with random weights."""
    m = model_section(tiny_model())
    return m, elmjax.init_params(m, jax.random.key(0))
