"""The model's own accounting: per-layer widths, parameter count and FLOPs per token.

OpenELM's layer-wise scaling gives each layer its own number of query/kv heads and its own
FFN width. ``layer_schedule`` computes them exactly as Apple's code does (multipliers
linearly interpolated across layers, rounded to two decimals, widths rounded with
``make_divisible``; see ``docs/openelm.md``). Everything else that depends on the shapes —
parameter count, FLOPs per token (for MFU), the model's layers, the KV cache, the Hugging
Face layout — reads the widths from here.

Functions take the ``model`` section of a run config (or a whole config with a ``model``
section).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from elmjax import config as config_lib


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Widths of one transformer block."""

    num_query_heads: int
    num_kv_heads: int
    ffn_dim: int


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Apple's rounding: nearest multiple of ``divisor``, never more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def _section(m):
    return m.model if "model" in m else m


def _interp_multipliers(lo_hi: Sequence[float], num_layers: int) -> list[float]:
    if len(lo_hi) == num_layers and num_layers != 2:
        return [round(float(x), 2) for x in lo_hi]
    lo, hi = lo_hi
    return [round(float(x), 2) for x in np.linspace(lo, hi, num=num_layers, dtype=float)]


def ffn_multipliers(m) -> list[float]:
    """Per-layer FFN multipliers, rounded to 2 decimals (as in Hugging Face ``config.json``)."""
    m = _section(m)
    return _interp_multipliers(tuple(m.ffn_multipliers), m.num_layers)


def layer_schedule(m) -> list[LayerSpec]:
    """Per-layer (query heads, kv heads, FFN width), exactly as Apple computes them.

    Explicit per-layer lists (``num_query_heads``, ``num_kv_heads``, ``ffn_dims``, as read from
    a Hugging Face ``config.json``) take precedence over the multiplier formula.
    """
    m = _section(m)
    n = m.num_layers
    if m.num_query_heads is not None:
        q = [int(x) for x in m.num_query_heads]
        kv = [int(x) for x in m.num_kv_heads] if m.num_kv_heads is not None else [
            h // m.num_gqa_groups for h in q]
    else:
        qkv_m = _interp_multipliers(tuple(m.qkv_multipliers), n)
        q = [make_divisible(m.model_dim * x, m.head_dim * m.num_gqa_groups) // m.head_dim
             for x in qkv_m]
        kv = [h // m.num_gqa_groups for h in q]
    if m.ffn_dims is not None:
        ffn = [int(x) for x in m.ffn_dims]
    else:
        ffn = [make_divisible(x * m.model_dim, m.ffn_dim_divisor) for x in ffn_multipliers(m)]
    return [LayerSpec(a, b, c) for a, b, c in zip(q, kv, ffn)]


def param_count(m, embeddings: bool = True) -> int:
    """Number of parameters (the tied embedding counted once; left out with ``embeddings=False``)."""
    m = _section(m)
    d, hd = m.model_dim, m.head_dim
    total = (m.vocab_size * d if embeddings else 0) + d  # embedding + final norm
    for s in layer_schedule(m):
        total += d * (s.num_query_heads + 2 * s.num_kv_heads) * hd  # qkv_proj
        total += s.num_query_heads * hd * d  # out_proj
        total += 2 * hd if m.normalize_qk else 0
        total += d * 2 * s.ffn_dim + s.ffn_dim * d  # proj_1, proj_2
        total += 2 * d  # attn_norm, ffn_norm
    return total


def flops_per_token(m, seq_len: int, causal: bool = True) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), summed over per-layer widths.

    Matmul FLOPs are ``6 * (matmul parameters)`` plus attention scores and values:
    per layer ``12 * q_heads * head_dim * seq_len`` (forward 4·q·hd·T for QK^T and AV),
    halved when ``causal`` because only the lower triangle is needed. ``causal=False``
    gives the common "6N + 12·L·H·Q·T" form that other projects tabulate.
    """
    m = _section(m)
    d, hd = m.model_dim, m.head_dim
    matmul_params = m.vocab_size * d  # the tied output head is a matmul
    attn = 0.0
    for s in layer_schedule(m):
        matmul_params += d * (s.num_query_heads + 2 * s.num_kv_heads) * hd
        matmul_params += s.num_query_heads * hd * d + 3 * d * s.ffn_dim
        attn += 12.0 * s.num_query_heads * hd * seq_len
    if causal:
        attn /= 2
    return 6.0 * matmul_params + attn


def describe(m) -> str:
    """A human-readable table of the layer schedule and the model's size."""
    m = _section(m)
    rows = [f"{'layer':>5} {'q_heads':>7} {'kv_heads':>8} {'ffn_dim':>7}"]
    for i, s in enumerate(layer_schedule(m)):
        rows.append(f"{i:>5} {s.num_query_heads:>7} {s.num_kv_heads:>8} {s.ffn_dim:>7}")
    n = param_count(m)
    rows.append(f"parameters: {n:,} ({n / 1e6:.2f} M); model_dim {m.model_dim}, "
                f"head_dim {m.head_dim}, vocab {m.vocab_size}, layers {m.num_layers}")
    return "\n".join(rows)


def check_schedule(m, prefix: str = "model") -> None:
    """Raises ``ConfigError`` when a layer of the schedule has an empty or inconsistent width."""
    for i, s in enumerate(layer_schedule(m)):
        config_lib.need(s.num_query_heads > 0 and s.num_kv_heads > 0 and s.ffn_dim > 0,
                        f"{prefix}.num_query_heads", f"layer {i} has an empty width: {s}")
        config_lib.need(s.num_query_heads % s.num_kv_heads == 0, f"{prefix}.num_kv_heads",
                        f"layer {i}: {s.num_query_heads} query heads are not a multiple of "
                        f"{s.num_kv_heads} kv heads")


config_lib.register_validator(check_schedule, model=True)
