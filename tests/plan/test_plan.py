"""``elmjax plan``: Cloud TPU names, collective accounting, and compiles for a TPU topology.

The compile tests need libtpu (the ``tpu`` extra) and skip cleanly without it.
"""

import importlib.util
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from elmjax import config, plan
from elmjax.model import schedule

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu not installed (pip install -e '.[tpu]')")

# Google's published slice shapes (Cloud TPU docs: v5p and v4 count TensorCores, two per
# chip; v5e/v6e count chips).
GOOGLE = [("v5p-8", "v5p:2x2x1", 4), ("v5p-16", "v5p:2x2x2", 8), ("v5p-128", "v5p:4x4x4", 64),
          ("v5p-1024", "v5p:8x8x8", 512), ("v4-32", "v4:2x2x4", 16), ("v4-256", "v4:4x4x8", 128),
          ("v5e-8", "v5e:2x4", 8), ("v5litepod-16", "v5e:4x4", 16), ("v5e-256", "v5e:16x16", 256),
          ("v6e-1", "v6e:1x1", 1), ("v6e-64", "v6e:8x8", 64), ("v6e-256", "v6e:16x16", 256)]


@pytest.mark.parametrize("name,topology,chips", GOOGLE)
def test_cloud_names_map_to_libtpu_topologies(name, topology, chips):
    t = plan.parse_target(name)
    assert (t.topology, t.chips) == (topology, chips)
    assert plan.parse_target(name, num_slices=2).chips == 2 * chips


@pytest.mark.parametrize("bad", ["v7-8", "v5p-12", "v5p-7", "tpu", "v5e-0"])
def test_bad_names_are_plan_errors(bad):
    with pytest.raises(plan.PlanError, match="--topology"):
        plan.parse_target(bad)


def test_collective_bytes_match_the_gathered_array():
    """An all-gather of a [64, 32] float32 array sharded 8 ways: each device receives 8 KiB."""
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("x",))
    x = jax.ShapeDtypeStruct((64, 32), jnp.float32, sharding=NamedSharding(mesh, P("x")))
    hlo = jax.jit(lambda a: a * 2, out_shardings=NamedSharding(mesh, P())).lower(x).compile().as_text()
    got = plan.collective_bytes(hlo)
    assert got["all-gather"] == 64 * 32 * 4
    assert sum(got.values()) == got["all-gather"]


def test_compiler_oom_message_is_parsed():
    msg = ("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
           "hbm. E1000: CompileTimeHbmOom: ... required for HLO temporaries (116.12G) exceeds "
           "available HBM (95.73G)")
    required, available = plan._oom(msg)
    assert required == pytest.approx(116.12 * 2 ** 30) and available == pytest.approx(95.73 * 2 ** 30)
    assert plan._oom("INVALID_ARGUMENT: something else") is None


@pytest.mark.skipif(HAS_LIBTPU, reason="checks the message shown without libtpu")
def test_without_libtpu_the_error_says_how_to_install_it():
    with pytest.raises(plan.PlanError, match=r"\.\[tpu\]"):
        plan.target_devices(plan.parse_target("v5p-8"))


@pytest.fixture(scope="module")
def quickstart_plan():
    """The quickstart (16 x 128 tokens, FSDP) compiled for v5p-8 (4 chips): one compile."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other libtpu processes may be running
        cfg = config.load("experiments/quickstart.py")
        return cfg, *plan.plan_compiled(cfg, plan.parse_target("v5p-8"))


@pytest.mark.slow
@needs_libtpu
def test_quickstart_plans_on_a_small_tpu_topology(quickstart_plan):
    cfg, r, _ = quickstart_plan
    assert r["fits"] and r["chips"] == 4 and r["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert r["attention"] == "splash"
    tokens = cfg.train.global_batch_size * cfg.data.seq_len
    assert r["model_flops_per_step"] == schedule.flops_per_token(cfg.model, cfg.data.seq_len) * tokens
    assert 0.5 < r["xla_flops_per_step"] / r["model_flops_per_step"] < 3
    assert r["state_bytes"] < r["per_device_bytes"] < r["hbm_bytes"]
    # Parameters + Adam moments, float32, sharded 4 ways (plus replicated scalars).
    params = schedule.param_count(cfg.model)
    assert 3 * params * 4 / 4 <= r["state_bytes"] < 3 * params * 4 / 4 * 1.1
    assert r["estimated_step_s"] > 0 and 0 < r["predicted_mfu"] < 1
    assert r["collective_bytes"]["all-gather"] > 0  # FSDP gathers parameters
    text = plan.format_report(r)
    assert "fits" in text and "compiler's estimate" in text


@pytest.mark.slow
@needs_libtpu
def test_fsdp_activations_are_batch_sharded_on_the_tpu_topology(quickstart_plan):
    cfg, _, compiled = quickstart_plan
    b, t, v = cfg.train.global_batch_size, cfg.data.seq_len, cfg.model.vocab_size
    hlo = compiled.as_text()
    assert f"f32[{b // 4},{t},{v}]" in hlo  # logits: batch over the 4 chips
    leading = {int(m.group(1)) for m in re.finditer(rf"(?:f32|bf16)\[(\d+),{t},\d+", hlo)}
    assert b not in leading  # no full-batch activation anywhere


@pytest.mark.slow
@needs_libtpu
def test_impossible_config_reports_does_not_fit(monkeypatch, capsys):
    """Through the command line with ``--json``: no traceback, exit status 1, the numbers."""
    from elmjax.cli import main

    monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # 16384 x 2048 tokens on 4 chips: the float32 logits alone are 4096 x 2048 x 4096 x 4 B
    # = 128 GiB per chip, more than a v5p chip's HBM.
    code = main(["plan", "--config", "experiments/quickstart.py", "--topology", "v5p-8", "--json",
                 "--config.train.global_batch_size=16384", "--config.data.seq_len=2048"])
    r = json.loads(capsys.readouterr().out)
    assert code == 1 and r["fits"] is False
    assert r["required_bytes"] > r["available_bytes"] > 90 * 2 ** 30
    for key in ("per_device_bytes", "hbm_bytes", "model_flops_per_step", "xla_flops_per_step",
                "estimated_step_s", "predicted_mfu", "mesh", "topology", "chips", "compile_s"):
        assert key in r
    text = plan.format_report(r)
    assert "DOES NOT FIT" in text and f"{r['available_bytes'] / 2 ** 30:.2f} GiB" in text


def test_search_space_tries_meshes_that_divide_the_batch_cheapest_memory_last():
    cfg = config.load("experiments/quickstart.py", ["--config.train.global_batch_size=16"])
    groups = plan.search_space(cfg, 8)
    meshes = {(g[0]["mesh.data"], g[0]["mesh.fsdp"], g[0]["mesh.tensor"]) for g in groups}
    assert meshes == {(1, 8, 1), (8, 1, 1), (1, 4, 2), (1, 2, 4)}
    for ladder in groups:
        assert ladder[0]["model.remat"] == "none" and ladder[0]["train.microbatches"] == 1
        for o in ladder:  # every candidate is a valid config whose batch splits evenly
            c = plan.with_overrides(cfg, o)
            assert 16 % (c.mesh.data * c.mesh.fsdp * c.train.microbatches) == 0
        # data=8 leaves 2 rows per device: at most 2 microbatches.
        if ladder[0]["mesh.data"] == 8:
            assert max(o["train.microbatches"] for o in ladder) == 2


@needs_libtpu
def test_multislice_mesh_puts_the_data_axis_across_slices(monkeypatch):
    """Two v5p-8 slices: each data-parallel group is one slice (ICI inside, DCN across)."""
    from elmjax import parallel

    monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    target = plan.parse_target("v5p-8", num_slices=2)
    cfg = config.load("experiments/quickstart.py", ["--config.mesh.data=2", "--config.mesh.fsdp=-1"])
    mesh = parallel.make_mesh(cfg, plan.target_devices(target))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    slices = np.vectorize(lambda d: d.slice_index)(mesh.devices)
    assert [set(slices[i].ravel()) for i in range(2)] == [{0}, {1}]
    with pytest.raises(plan.PlanError, match="multiple of the 2 slices"):
        plan.plan(config.load("experiments/quickstart.py"), target)  # data=1 cannot span 2


@pytest.mark.slow
@needs_libtpu
def test_multislice_plan_compiles_and_reports_as_strict_json(monkeypatch, capsys):
    from elmjax.cli import main

    monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    code = main(["plan", "--config", "experiments/quickstart.py", "--topology", "v5p-8",
                 "--num-slices", "2", "--config.mesh.data=2", "--config.mesh.fsdp=-1", "--json"])
    out = capsys.readouterr().out
    r = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert code == 0 and r["fits"] and r["chips"] == 8 and r["num_slices"] == 2
    assert r["collective_bytes"]["all-reduce"] > 0  # gradients summed across the slices
    # The compiler prices no cross-slice collective: an estimate is positive or absent.
    assert r["estimated_step_s"] is None or r["estimated_step_s"] > 0
    assert ("no step-time estimate" in plan.format_report(r)) == (r["estimated_step_s"] is None)
