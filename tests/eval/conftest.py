"""Fixtures for evaluation tests: a tiny random model, a tiny tokenizer, task files."""

import jax
import pytest

import elmjax
from tests.conftest import tiny_model
from tests.eval.eval_data import train_tokenizer, write_hf_layout


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tiny")


@pytest.fixture(scope="session")
def tiny_lm():
    """(config, params) of a tiny random OpenELM with vocabulary 128 and context 64."""
    cfg = tiny_model()
    return cfg, elmjax.init_params(cfg, jax.random.key(0))


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """A data directory with every task's hand-written documents in the hub layout."""
    root = tmp_path_factory.mktemp("tasks")
    return str(root), write_hf_layout(str(root))
