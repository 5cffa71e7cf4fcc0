"""Activation sharding in the compiled train step (8 virtual CPU devices) and the chunked loss."""

import re

import jax
import numpy as np
import pytest

from elmjax import parallel
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step, token_losses
from tests.train.test_step import run_config, synthetic_batch

# A global batch whose per-device and partially sharded sizes (3, 6, 12, 24) differ from
# every head count and head size of run_config's model (1, 2, 4, 16): leading dims then
# tell activations apart. The vocabulary (160) is no layer's FFN width either.
B, T, V = 24, 16, 160


def config(data, fsdp, tensor):
    cfg = run_config(vocab_size=V)
    cfg.train.global_batch_size = B
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = data, fsdp, tensor
    return cfg


def compiled_step(cfg):
    """(compiled train step, its HLO text) for ``cfg`` on all 8 devices, abstract inputs."""
    mesh = parallel.make_mesh(cfg)
    setup = state_lib.setup(cfg, mesh)
    bsh = parallel.batch_sharding(mesh, cfg)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bsh)
             for k, v in synthetic_batch(cfg).items()}
    compiled = jit_train_step(cfg, setup.tx, setup.shardings, bsh).lower(
        state_lib.sharded_abstract_state(setup), batch).compile()
    return compiled, compiled.as_text()


def activation_shapes(hlo: str) -> set[tuple[int, ...]]:
    """Shapes of rank-3/4 arrays ``[b, T, ...]`` in the per-device HLO whose ``b`` divides B
    and is no head count (so: a batch share)."""
    shapes = set()
    for dims in re.findall(r"(?:f32|bf16)\[([0-9,]+)\]", hlo):
        d = tuple(int(x) for x in dims.split(","))
        if len(d) in (3, 4) and d[1] == T and d[0] in (3, 6, 12, 24):
            shapes.add(d)
    return shapes


@pytest.fixture(scope="module")
def fsdp_hlo():
    return compiled_step(config(2, 4, 1))[1]


def test_fsdp_keeps_every_activation_and_the_logits_batch_sharded(fsdp_hlo):
    shapes = activation_shapes(fsdp_hlo)
    assert (B // 8, T, V) in shapes  # logits: the global batch over data*fsdp = 8
    assert (B // 8, T, 64) in shapes  # block outputs [batch, length, embed]
    assert {s[0] for s in shapes} == {B // 8}, sorted(shapes)  # nothing less sharded


def test_tensor_parallel_shards_heads_and_ffn_where_they_divide(caplog):
    cfg = config(1, 4, 2)
    with caplog.at_level("WARNING", logger="elmjax.parallel"):
        _, hlo = compiled_step(cfg)
    shapes = activation_shapes(hlo)
    assert max(s[0] for s in shapes) == B // 4, sorted(shapes)  # nothing less sharded
    assert (B // 4, T, V // 2) in shapes  # logits: vocab over tensor
    # Layer 1 has 4 query / 2 kv heads of 16: one kv head per device, 2 query heads.
    assert (B // 4, T, 2, 16) in shapes and (B // 4, T, 1, 16) in shapes
    # Layer 0's single kv head cannot be split over tensor=2: replicated, logged once.
    fallbacks = [r.getMessage() for r in caplog.records
                 if "activation" in r.getMessage() and "kv_heads" in r.getMessage()]
    assert len(fallbacks) == 1 and "kv_heads=1" in fallbacks[0]


def test_chunked_loss_equals_whole_rows_and_bounds_the_logits():
    cfg = run_config()
    params = state_lib.train_params(cfg, jax.random.key(0))
    batch = synthetic_batch(cfg)

    def loss(cfg, p):
        return token_losses(cfg, p, batch, 1e-4)[0].sum()

    whole = jax.value_and_grad(lambda p: loss(cfg, p))(params)
    chunked_cfg = run_config()
    chunked_cfg.train.loss_chunk = 4
    chunked = jax.value_and_grad(lambda p: loss(chunked_cfg, p))(params)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(chunked[1]), jax.tree.leaves(whole[1])):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    chunked_cfg = config(1, 8, 1)
    chunked_cfg.train.loss_chunk = 4
    _, hlo = compiled_step(chunked_cfg)
    assert f"f32[3,4,{V}]" in hlo and f"f32[3,{T},{V}]" not in hlo
