"""Shared test setup: 8 virtual CPU devices, small model configs and the object-store servers."""

import os

# Must be set before JAX initialises its backend (sharding tests use 8 devices).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import ml_collections  # noqa: E402
import pytest  # noqa: E402

from elmjax.config import model_config  # noqa: E402


def tiny_model(**overrides) -> ml_collections.ConfigDict:
    """A 3-layer OpenELM with layer-wise scaling and GQA that differs per layer."""
    m = model_config(num_layers=3, model_dim=64, head_dim=16, num_gqa_groups=2,
                     qkv_multipliers=(0.5, 1.0), ffn_multipliers=(0.5, 2.0),
                     ffn_dim_divisor=16, vocab_size=128, max_context_length=64)
    m.update(overrides)
    return ml_collections.ConfigDict({"model": m})


@pytest.fixture
def tiny():
    return tiny_model()


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    """Object-store servers on 127.0.0.1 (fake-gcs-server, moto's S3), one per session (skipped
    cleanly without the ``storage-test`` extra); their environment variables are set in this
    process, and so in subprocesses."""
    from tests.storage import servers

    missing = servers.missing_packages()
    if missing:
        pytest.skip(f"object-store tests need {', '.join(missing)} (pip install -e '.[storage-test]')")
    saved = dict(os.environ)
    with servers.object_stores(str(tmp_path_factory.mktemp("stores"))) as env:
        os.environ.update(env)
        try:
            yield env
        finally:
            os.environ.clear()
            os.environ.update(saved)
