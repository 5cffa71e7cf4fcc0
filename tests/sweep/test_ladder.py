"""The ladder's shapes and counts: Apple's presets by the layer-wise-scaling rule, the
model's own parameter count (``elmjax model`` and the initialised tree), budgets."""

import contextlib
import io
import math
import re

import jax
import pytest

from elmjax import cli
from elmjax.config import model_config
from elmjax.model.schedule import layer_schedule, param_count
from elmjax.model.openelm import init_params
from elmjax.train import ladder, sweep

# REFERENCE.md: parameters of Apple's released models (vocab 32000) and corenet's (32128).
APPLE_COUNTS = {"270m": (271_527_168, 271_691_008), "450m": (457_179_136, 457_375_744),
                "1_1b": (1_079_891_456, 1_080_153_600), "3b": (3_036_647_424, 3_037_040_640)}
APPLE_RULE = dict(num_gqa_groups=4, qkv_multipliers=(0.5, 1.0), ffn_multipliers=(0.5, 4.0),
                  ffn_dim_divisor=256)
LADDER = "experiments/sweeps/scaling_ladder.py"


@pytest.mark.parametrize("size", sorted(APPLE_COUNTS))
def test_rule_reproduces_apple_presets(size):
    shape = ladder.Shape(*ladder.OPENELM_PRESETS[size])
    for vocab, expected in zip((32000, 32128), APPLE_COUNTS[size]):
        rung = ladder.make_rung(model_config(vocab_size=vocab, **APPLE_RULE), shape, 2048)
        assert rung.params == expected
        assert rung.non_embedding == expected - vocab * shape.model_dim
    # asked for that many parameters, the ladder picks Apple's shape
    assert ladder.shape_for_params(APPLE_COUNTS[size][0], model_config(**APPLE_RULE), 2048) == shape


def test_rule_reproduces_270m_per_layer_widths():
    base = model_config(**APPLE_RULE)
    rung = ladder.make_rung(base, ladder.Shape(*ladder.OPENELM_PRESETS["270m"]), 2048)
    sched = ladder.per_layer(base, rung)
    assert [s.num_query_heads for s in sched] == [12] * 5 + [16] * 7 + [20] * 4
    assert [s.ffn_dim for s in sched] == [768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072,
                                          3328, 3584, 3840, 4352, 4608, 4864, 5120]


def test_ladder_spans_1m_to_1b_with_rising_counts():
    base = model_config(**APPLE_RULE)
    rungs = ladder.ladder(base, 2048, targets=(1e6, 3e7, 1e8, 1e9, 1.5e9))
    counts = [r.params for r in rungs]
    assert counts == sorted(counts) and len(set(counts)) == 5
    assert counts[-1] > 1e9 and counts[0] < 1e7
    for target, r in zip((1e8, 1e9), rungs[2:4]):
        assert abs(math.log(r.params / target)) < 0.25  # nearest shape within ~25%


def _model_cli_count(spec, overrides):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["model", "--config", spec, *overrides]) == 0
    return int(re.search(r"parameters: ([\d,]+)", out.getvalue()).group(1).replace(",", ""))


def test_cpu_ladder_counts_equal_elmjax_model_and_the_initialised_tree():
    runs = sweep.resolve(LADDER)
    assert 4 <= len(runs) <= 6
    base = runs[0][2]
    rungs = {r.name: r for r in ladder.ladder(
        base.model, base.data.seq_len,
        shapes=[ladder.rule_shape(d, 32.0) for d in (64, 96, 128, 160, 192, 224)])}
    for name, overrides, cfg in runs[:2]:
        n_tree = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
            lambda: init_params(cfg, jax.random.key(0)))))
        assert rungs[name].params == param_count(cfg) == n_tree == _model_cli_count(LADDER, overrides)
    assert _model_cli_count(LADDER, runs[-1][1]) == rungs[runs[-1][0]].params


def test_budgets_tokens_per_param_flops_and_steps():
    base = model_config(**APPLE_RULE, vocab_size=4096)
    rungs = ladder.ladder(base, 128, shapes=[ladder.rule_shape(d, 32.0) for d in (64, 128, 256)])
    tps = 2048
    for run in ladder.by_tokens_per_param(rungs, 20, tps):
        assert abs(run.tokens - 20 * run.rung.params) <= tps / 2
        assert run.flops == run.rung.flops_per_token * run.tokens
    for run in ladder.isoflop_grid(rungs, [1e13, 1e14], tps, min_steps=10):
        budget = float(run.budget.split("=")[1])
        assert abs(run.flops - budget) <= run.rung.flops_per_token * tps / 2
    window = ladder.isoflop_grid(rungs, [1e13, 1e14], tps, tokens_per_param=(5, 50))
    assert window and all(5 <= r.tokens / r.rung.params <= 50 for r in window)
    assert {r.steps for r in ladder.by_steps(rungs, 7, tps)} == {7}
    entries = dict(ladder.sweep_entries(ladder.by_steps(rungs, 50, tps), lr_for=lambda r: 1e-3))
    assert entries[rungs[0].name]["optim.decay_steps"] == 50
    assert entries[rungs[0].name]["optim.warmup_steps"] == 5
    assert entries[rungs[0].name]["optim.peak_lr"] == 1e-3


def test_alpha_beta_variations_change_per_layer_widths():
    base = model_config(**APPLE_RULE)
    shape = ladder.Shape(*ladder.OPENELM_PRESETS["270m"])
    narrow = ladder.make_rung(base, shape, 2048, qkv_multipliers=(0.25, 1.0),
                              ffn_multipliers=(0.5, 2.0))
    m = ladder.model_with(base, narrow.overrides)
    assert narrow.params == param_count(m) < APPLE_COUNTS["270m"][0]
    # 1280 * 0.25 = 320 rounds to a multiple of 4 * 64 = 256 no more than 10% below: 512
    assert layer_schedule(m)[0].num_query_heads == 8
    runs = sweep.sweep_runs(f"{LADDER}:sizes=2,alpha=0.25,beta=2.0")
    cfg = sweep.resolve(f"{LADDER}:sizes=2,alpha=0.25,beta=2.0")[0][2]
    assert len(runs) == 2 and tuple(cfg.model.qkv_multipliers) == (0.25, 1.0)
    assert tuple(cfg.model.ffn_multipliers) == (0.5, 2.0)
