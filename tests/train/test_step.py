"""Train step: mesh equivalence, real sharding, microbatches, schedule, non-finite skips."""

import math

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from elmjax import parallel
from elmjax.train import optimizer as opt_lib
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step, make_train_step
from elmjax.presets import base_config
from tests.conftest import tiny_model


def run_config(**model):
    cfg = base_config()
    cfg.model = tiny_model(num_layers=2, model_dim=64, head_dim=16, num_gqa_groups=2,
                           **model).model
    cfg.data.seq_len = 16
    cfg.train.global_batch_size = 8
    cfg.train.steps = 10
    cfg.optim.peak_lr = 1e-2
    cfg.optim.warmup_steps = 2
    cfg.optim.decay_steps = 10
    return cfg


def synthetic_batch(cfg, seed=0):
    rng = np.random.default_rng(seed)
    b, t = cfg.train.global_batch_size, cfg.data.seq_len
    tokens = rng.integers(0, cfg.model.vocab_size, (b, t + 1)).astype(np.int32)
    seg = np.ones((b, t), np.int32)
    seg[:, t // 2:] = 2  # two packed documents per row
    pos = np.concatenate([np.arange(t // 2), np.arange(t - t // 2)])[None].repeat(b, 0)
    mask = np.ones((b, t), np.float32)
    mask[0, -3:] = 0.0
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": seg,
            "positions": pos.astype(np.int32), "loss_mask": mask}


def run_steps(cfg, mesh, batches):
    tx = opt_lib.make_optimizer(cfg)
    state, shardings = state_lib.init_state(cfg, mesh, tx, jax.random.key(0))
    bsh = parallel.batch_sharding(mesh, cfg)
    step = jit_train_step(cfg, tx, shardings, bsh)
    losses = []
    for b in batches:
        state, m = step(state, parallel.global_batch(b, bsh))
        losses.append(float(m["loss"]))
    return state, losses


@pytest.fixture(scope="module")
def reference():
    cfg = run_config()
    batches = [synthetic_batch(cfg, s) for s in range(2)]
    mesh = parallel.make_mesh(cfg, devices=jax.devices()[:1])
    state, losses = run_steps(cfg, mesh, batches)
    return cfg, batches, jax.device_get(state["params"]), losses


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 8, 1), (2, 2, 2)])
def test_meshes_match_single_device(reference, shape):
    cfg, batches, params, losses = reference
    cfg = run_config()
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = shape
    state, sharded_losses = run_steps(cfg, parallel.make_mesh(cfg), batches)
    np.testing.assert_allclose(sharded_losses, losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(state["params"]))):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_parameters_and_moments_are_sharded_as_the_rules_say():
    cfg = run_config()
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 4, 2
    mesh = parallel.make_mesh(cfg)
    tx = opt_lib.make_optimizer(cfg)
    state, _ = state_lib.init_state(cfg, mesh, tx, jax.random.key(0))
    p = state["params"]
    # embed -> fsdp, vocab -> tensor
    assert p["token_embeddings"].sharding.spec == P("tensor", "fsdp")
    # layer 0 has 2 query heads + 2 kv heads of 16: qkv width 64 divides tensor=2
    assert p["layers_0"]["attn"]["qkv_proj"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert p["layers_0"]["ffn"]["proj_2"]["kernel"].sharding.spec == P("tensor", "fsdp")
    assert p["norm"]["scale"].sharding.spec == P(None)
    shard = p["layers_0"]["ffn"]["proj_1"]["kernel"].addressable_shards[0].data.shape
    full = p["layers_0"]["ffn"]["proj_1"]["kernel"].shape
    assert shard == (full[0] // 4, full[1] // 2)
    adam = state["opt_state"][1][0]  # chain(clip, adamw) -> adamw's ScaleByAdamState
    assert adam.mu["layers_0"]["ffn"]["proj_1"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert adam.count.sharding.spec == P()


def test_indivisible_dimension_is_replicated_and_logged(caplog):
    cfg = run_config(vocab_size=127)  # odd vocabulary: not divisible by tensor=2
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 4, 2
    mesh = parallel.make_mesh(cfg)
    with caplog.at_level("WARNING", logger="elmjax.parallel"):
        sh = state_lib.state_shardings(cfg, mesh, opt_lib.make_optimizer(cfg))
    assert sh["params"]["token_embeddings"].spec == P(None, "fsdp")
    assert any("vocab" in r.getMessage() and "127" in r.getMessage() for r in caplog.records)


def test_microbatches_equal_one_big_batch(reference):
    cfg, batches, params, losses = reference
    cfg = run_config()
    cfg.train.microbatches = 4
    state, micro_losses = run_steps(cfg, parallel.make_mesh(cfg, devices=jax.devices()[:1]), batches)
    np.testing.assert_allclose(micro_losses, losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(state["params"]))):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_non_finite_loss_is_skipped_and_counted():
    cfg = run_config()
    mesh = parallel.make_mesh(cfg, devices=jax.devices()[:1])
    tx = opt_lib.make_optimizer(cfg)
    state, shardings = state_lib.init_state(cfg, mesh, tx, jax.random.key(0))
    before = jax.device_get(state["params"])
    bad = synthetic_batch(cfg)
    bad["loss_mask"][1, 2] = np.inf
    new, m = jax.jit(make_train_step(cfg, tx))(state, bad)
    assert int(m["skipped"]) == 1 and not math.isfinite(float(m["loss"]))
    assert int(new["step"]) == 1
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(new["params"]))):
        np.testing.assert_array_equal(a, b)
    _, m = jax.jit(make_train_step(cfg, tx))(new, synthetic_batch(cfg))
    assert int(m["skipped"]) == 0


def test_loss_is_masked_mean_cross_entropy_plus_z_loss():
    import elmjax

    cfg = run_config()
    cfg.train.z_loss = 1e-2
    tx = opt_lib.make_optimizer(cfg)
    state, _ = state_lib.init_state(cfg, parallel.make_mesh(cfg, devices=jax.devices()[:1]), tx,
                                    jax.random.key(0))
    batch = synthetic_batch(cfg)
    logits = np.asarray(elmjax.forward(cfg, state["params"], batch["inputs"], batch["segment_ids"],
                                       batch["positions"]), np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    ce = logz - np.take_along_axis(logits, batch["targets"][..., None], -1)[..., 0]
    mask = batch["loss_mask"]
    want = ((ce + 1e-2 * logz ** 2) * mask).sum() / mask.sum()
    _, m = jax.jit(make_train_step(cfg, tx))(state, batch)
    np.testing.assert_allclose(float(m["loss"]), want, rtol=1e-5)
    np.testing.assert_allclose(float(m["ce_loss"]), (ce * mask).sum() / mask.sum(), rtol=1e-5)


@pytest.mark.parametrize("step", [0, 1, 2, 5, 9, 10, 50])
def test_cosine_schedule_matches_formula(step):
    cfg = run_config()
    o = cfg.optim
    lr = float(opt_lib.learning_rate_schedule(o, cfg.train.steps)(step))
    if step < o.warmup_steps:
        want = o.init_lr + (o.peak_lr - o.init_lr) * step / o.warmup_steps
    else:
        frac = min(step - o.warmup_steps, o.decay_steps - o.warmup_steps) / (o.decay_steps - o.warmup_steps)
        want = o.peak_lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
    assert lr == pytest.approx(want, rel=1e-5, abs=1e-8)  # float32 arithmetic


def test_wsd_schedule_is_flat_then_decays_to_floor():
    cfg = run_config()
    cfg.optim.schedule = "wsd"
    cfg.optim.wsd_decay_fraction = 0.2
    f = opt_lib.learning_rate_schedule(cfg.optim, 100)
    assert float(f(2)) == pytest.approx(cfg.optim.peak_lr)
    assert float(f(80)) == pytest.approx(cfg.optim.peak_lr)
    assert float(f(90)) == pytest.approx(cfg.optim.peak_lr * (1 - 0.5 * 0.9), rel=1e-5)
    assert float(f(100)) == pytest.approx(cfg.optim.peak_lr * cfg.optim.min_lr_ratio, rel=1e-5)


def test_weight_decay_mask_covers_matrices_not_norms():
    cfg = run_config()
    import elmjax

    mask = opt_lib.decay_mask(elmjax.init_params(cfg, jax.random.key(0)))
    assert mask["token_embeddings"] and mask["layers_0"]["attn"]["qkv_proj"]["kernel"]
    assert not mask["norm"]["scale"] and not mask["layers_1"]["attn"]["q_norm"]["scale"]
