"""Layer schedule and accounting against Apple's published numbers (docs/openelm.md)."""

import pytest

from elmjax import config as C
from elmjax.model import schedule as S

# Parameter counts of Apple's released models (vocab 32000) and corenet's (vocab 32128).
APPLE_COUNTS = {
    "270m": (271_527_168, 271_691_008),
    "450m": (457_179_136, 457_375_744),
    "1_1b": (1_079_891_456, 1_080_153_600),
    "3b": (3_036_647_424, 3_037_040_640),
}


def _preset(name, arg=None):
    return C.load(f"experiments/{name}.py" + (f":{arg}" if arg else ""))


@pytest.mark.parametrize("size", sorted(APPLE_COUNTS))
def test_presets_reproduce_apple_parameter_counts(size):
    cfg = _preset(f"openelm_{size}")
    c32000, c32128 = APPLE_COUNTS[size]
    assert S.param_count(cfg) == c32000
    cfg.model.vocab_size = 32128
    assert S.param_count(cfg) == c32128


def test_270m_layer_schedule_matches_apple():
    sched = S.layer_schedule(_preset("openelm_270m"))
    assert [s.num_query_heads for s in sched] == [12] * 5 + [16] * 7 + [20] * 4
    assert [s.num_kv_heads for s in sched] == [3] * 5 + [4] * 7 + [5] * 4
    assert [s.ffn_dim for s in sched] == [768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072,
                                          3328, 3584, 3840, 4352, 4608, 4864, 5120]


@pytest.mark.parametrize("size,first,last", [("450m", (12, 768), (24, 6144)),
                                             ("1_1b", (16, 1024), (32, 8192)),
                                             ("3b", (12, 1536), (24, 12288))])
def test_preset_first_and_last_layer_widths(size, first, last):
    sched = S.layer_schedule(_preset(f"openelm_{size}"))
    assert (sched[0].num_query_heads, sched[0].ffn_dim) == first
    assert (sched[-1].num_query_heads, sched[-1].ffn_dim) == last


def test_make_divisible_never_rounds_down_more_than_ten_percent():
    assert S.make_divisible(640.0, 256) == 768  # 512 would be 20% below
    assert S.make_divisible(1280 * 0.5, 256) == 768
    assert S.make_divisible(100.0, 8) == 104
    assert S.make_divisible(3.0, 8) == 8


def test_flops_per_token_by_hand_for_one_layer():
    m = C.model_config(num_layers=1, model_dim=8, head_dim=4, num_gqa_groups=1,
                       qkv_multipliers=(1.0, 1.0), ffn_multipliers=(2.0, 2.0),
                       ffn_dim_divisor=8, vocab_size=10)
    (s,) = S.layer_schedule(m)
    assert (s.num_query_heads, s.ffn_dim) == (2, 16)
    matmul = 10 * 8 + 8 * (2 + 4) * 4 + 2 * 4 * 8 + 3 * 8 * 16
    assert S.flops_per_token(m, 32, causal=False) == 6 * matmul + 12 * 2 * 4 * 32
    assert S.flops_per_token(m, 32, causal=True) == 6 * matmul + 6 * 2 * 4 * 32
