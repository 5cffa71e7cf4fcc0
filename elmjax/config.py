"""Config schema, validation and the model's own accounting.

A run is described by one ml-collections ``ConfigDict`` with the sections
``model``, ``data``, ``train``, ``optim``, ``mesh``, ``checkpoint``, ``log``
(and optional ones later features add). Presets live in ``experiments/`` and
start from ``experiments/common.py``.

The per-layer scaling schedule is computed exactly as Apple's OpenELM code
does (corenet ``projects/openelm``): multipliers are linearly interpolated
across layers, rounded to two decimals, and widths are rounded with
``make_divisible``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import ml_collections
import numpy as np

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "einsum", "splash")  # elmjax.model.attention
REMAT_POLICIES = ("none", "full", "save_dots")
SCHEDULES = ("cosine", "wsd", "constant")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and what is allowed."""


# --------------------------------------------------------------------------- schema


def model_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the ``model`` section (the OpenELM-270M shape), updated by ``overrides``."""
    m = ml_collections.ConfigDict(
        dict(
            name="openelm",
            num_layers=16,
            model_dim=1280,
            head_dim=64,
            num_gqa_groups=4,  # query heads per kv head
            qkv_multipliers=(0.5, 1.0),
            ffn_multipliers=(0.5, 4.0),
            ffn_dim_divisor=256,
            vocab_size=32000,
            rope_freq_constant=10000.0,
            rope_max_length=4096,
            max_context_length=2048,
            normalize_qk=True,
            norm_eps=1e-6,
            # Explicit per-layer widths (from a Hugging Face config.json); when set
            # they replace the multiplier formula. ``None`` means "compute".
            num_query_heads=ml_collections.FieldReference(None, field_type=tuple),
            num_kv_heads=ml_collections.FieldReference(None, field_type=tuple),
            ffn_dims=ml_collections.FieldReference(None, field_type=tuple),
            dtype="float32",  # compute dtype; params stay float32
            param_dtype="float32",
            attention="auto",  # splash on TPU, xla elsewhere (elmjax.model.attention)
            remat="none",
            init_std=ml_collections.FieldReference(None, field_type=float),
        )
    )
    m.update(overrides)
    return m


# --------------------------------------------------------------------------- schedule


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Apple's rounding: nearest multiple of ``divisor``, never more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Widths of one transformer block."""

    num_query_heads: int
    num_kv_heads: int
    ffn_dim: int


def _interp_multipliers(lo_hi: Sequence[float], num_layers: int) -> list[float]:
    if len(lo_hi) == num_layers and num_layers != 2:
        return [round(float(x), 2) for x in lo_hi]
    lo, hi = lo_hi
    return [round(float(x), 2) for x in np.linspace(lo, hi, num=num_layers, dtype=float)]


def ffn_multipliers(m: ml_collections.ConfigDict) -> list[float]:
    """Per-layer FFN multipliers, rounded to 2 decimals (as in Hugging Face ``config.json``)."""
    return _interp_multipliers(tuple(m.ffn_multipliers), m.num_layers)


def layer_schedule(m: ml_collections.ConfigDict) -> list[LayerSpec]:
    """Per-layer (query heads, kv heads, FFN width), exactly as Apple computes them.

    Takes the ``model`` section of a config (or a whole config).
    """
    if "model" in m:
        m = m.model
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


# --------------------------------------------------------------------------- accounting


def param_count(m: ml_collections.ConfigDict) -> int:
    """Number of parameters (tied embedding counted once)."""
    if "model" in m:
        m = m.model
    d, hd = m.model_dim, m.head_dim
    total = m.vocab_size * d + d  # embedding + final norm
    for s in layer_schedule(m):
        total += d * (s.num_query_heads + 2 * s.num_kv_heads) * hd  # qkv_proj
        total += s.num_query_heads * hd * d  # out_proj
        total += 2 * hd if m.normalize_qk else 0
        total += d * 2 * s.ffn_dim + s.ffn_dim * d  # proj_1, proj_2
        total += 2 * d  # attn_norm, ffn_norm
    return total


def flops_per_token(m: ml_collections.ConfigDict, seq_len: int, causal: bool = True) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), summed over per-layer widths.

    Matmul FLOPs are ``6 * (matmul parameters)`` plus attention scores and values:
    per layer ``12 * q_heads * head_dim * seq_len`` (forward 4·q·hd·T for QK^T and AV),
    halved when ``causal`` because only the lower triangle is needed. ``causal=False``
    gives the common "6N + 12·L·H·Q·T" form that other projects tabulate.
    """
    if "model" in m:
        m = m.model
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


# --------------------------------------------------------------------------- validation


def _need(cond: bool, key: str, msg: str):
    if not cond:
        raise ConfigError(f"config key '{key}': {msg}")


def validate_model(m: ml_collections.ConfigDict, prefix: str = "model") -> None:
    """Checks the ``model`` section; raises ``ConfigError`` naming the key."""
    for key in ("num_layers", "model_dim", "head_dim", "num_gqa_groups", "vocab_size",
                "ffn_dim_divisor", "rope_max_length", "max_context_length"):
        _need(isinstance(m[key], int) and m[key] > 0, f"{prefix}.{key}",
              f"must be a positive integer, got {m[key]!r}")
    _need(m.dtype in DTYPES, f"{prefix}.dtype", f"must be one of {DTYPES}, got {m.dtype!r}")
    _need(m.param_dtype in DTYPES, f"{prefix}.param_dtype",
          f"must be one of {DTYPES}, got {m.param_dtype!r}")
    _need(m.attention in ATTENTION_IMPLS, f"{prefix}.attention",
          f"must be one of {ATTENTION_IMPLS}, got {m.attention!r}")
    _need(m.remat in REMAT_POLICIES, f"{prefix}.remat",
          f"must be one of {REMAT_POLICIES}, got {m.remat!r}")
    _need(m.norm_eps > 0, f"{prefix}.norm_eps", f"must be > 0, got {m.norm_eps}")
    _need(m.head_dim % 2 == 0, f"{prefix}.head_dim", "must be even (rotary embeddings)")
    for key in ("qkv_multipliers", "ffn_multipliers"):
        v = tuple(m[key])
        _need(len(v) in (2, m.num_layers) and all(x > 0 for x in v), f"{prefix}.{key}",
              f"must be (low, high) or one positive value per layer, got {v}")
    for key in ("num_query_heads", "num_kv_heads", "ffn_dims"):
        if m[key] is not None:
            _need(len(m[key]) == m.num_layers, f"{prefix}.{key}",
                  f"must have num_layers={m.num_layers} entries, got {len(m[key])}")
    for i, s in enumerate(layer_schedule(m)):
        _need(s.num_query_heads > 0 and s.num_kv_heads > 0 and s.ffn_dim > 0,
              f"{prefix}.num_query_heads", f"layer {i} has an empty width: {s}")
        _need(s.num_query_heads % s.num_kv_heads == 0, f"{prefix}.num_kv_heads",
              f"layer {i}: {s.num_query_heads} query heads are not a multiple of "
              f"{s.num_kv_heads} kv heads")


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates a whole run config before anything compiles; returns it unchanged.

    Raises ``ConfigError`` whose message names the offending key and the allowed values.
    """
    _need("model" in cfg, "model", "section is missing")
    validate_model(cfg.model)
    for validator in _SECTION_VALIDATORS:
        validator(cfg)
    return cfg


_SECTION_VALIDATORS: list = []


def register_validator(fn):
    """Adds a validator for a config section owned by another module (data, train, ...)."""
    _SECTION_VALIDATORS.append(fn)
    return fn


def _validate_train(cfg):
    if "train" in cfg:
        t = cfg.train
        _need(t.steps >= 0, "train.steps", f"must be >= 0, got {t.steps}")
        _need(t.global_batch_size > 0, "train.global_batch_size",
              f"must be positive, got {t.global_batch_size}")
        _need(t.microbatches >= 1 and t.global_batch_size % t.microbatches == 0,
              "train.microbatches",
              f"must be >= 1 and divide train.global_batch_size={t.global_batch_size}, "
              f"got {t.microbatches}")
    if "optim" in cfg:
        o = cfg.optim
        _need(o.schedule in SCHEDULES, "optim.schedule",
              f"must be one of {SCHEDULES}, got {o.schedule!r}")
        _need(o.peak_lr > 0, "optim.peak_lr", f"must be > 0, got {o.peak_lr}")
        _need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio",
              f"must be in [0, 1], got {o.min_lr_ratio}")
        _need(o.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if "mesh" in cfg:
        for key in ("data", "fsdp", "tensor"):
            v = cfg.mesh[key]
            _need(isinstance(v, int) and (v > 0 or v == -1), f"mesh.{key}",
                  f"must be a positive integer or -1 (the rest of the devices), got {v!r}")
        _need([cfg.mesh[k] for k in ("data", "fsdp", "tensor")].count(-1) <= 1, "mesh",
              "at most one of mesh.data / mesh.fsdp / mesh.tensor may be -1")
    if "data" in cfg and "seq_len" in cfg.data:
        _need(0 < cfg.data.seq_len <= cfg.model.rope_max_length, "data.seq_len",
              f"must be in [1, model.rope_max_length={cfg.model.rope_max_length}], "
              f"got {cfg.data.seq_len}")


register_validator(_validate_train)

LONG_DOC_POLICIES = ("split", "truncate")


def _validate_data(cfg):
    if "data" not in cfg:
        return
    d = cfg.data
    for key in ("mixture", "tokenizer"):
        if key in d:
            _need(isinstance(d[key], str) and d[key], f"data.{key}",
                  f"must be a non-empty path, got {d[key]!r}")
    for key in ("min_chars", "min_tokens", "num_workers", "prefetch", "mix_block_tokens"):
        if key in d:
            _need(isinstance(d[key], int) and d[key] >= 0, f"data.{key}",
                  f"must be an integer >= 0 (0 turns it off / means auto), got {d[key]!r}")
    for key in ("shuffle_buffer", "pack_rows", "worker_buffer_size", "tokenizer_threads"):
        if key in d:
            _need(isinstance(d[key], int) and d[key] >= 1, f"data.{key}",
                  f"must be a positive integer, got {d[key]!r}")
    if "long_doc_policy" in d:
        _need(d.long_doc_policy in LONG_DOC_POLICIES, "data.long_doc_policy",
              f"must be one of {LONG_DOC_POLICIES}, got {d.long_doc_policy!r}")


register_validator(_validate_data)


# --------------------------------------------------------------------------- curriculum

PHASE_LR = ("continue", "constant", "linear_decay", "cosine_decay")


@dataclasses.dataclass(frozen=True)
class PhaseSpan:
    """One curriculum phase: steps ``[start, end)``, its mixture, data overrides, LR segment."""

    index: int
    name: str
    start: int
    end: int
    mixture: str
    data: dict
    lr_schedule: str = "continue"


def curriculum_phases(cfg) -> list[PhaseSpan]:
    """The run's phases in order. Without a ``curriculum`` section: one phase over
    ``data.mixture`` covering every step.

    A curriculum section names its phases in order (``curriculum.phases = "web,refined"``)
    and holds one sub-section per phase with ``mixture``, a length (``steps`` or
    ``fraction`` of ``train.steps``; the last phase may leave both 0 to take the rest),
    optional ``data`` overrides and ``lr_schedule`` (one of ``PHASE_LR``).
    """
    total = int(cfg.train.steps)
    if "curriculum" not in cfg or not cfg.curriculum.get("phases"):
        return [PhaseSpan(0, "main", 0, total, cfg.data.mixture, {})]
    names = [n.strip() for n in cfg.curriculum.phases.split(",") if n.strip()]
    for name in names:
        _need(name in cfg.curriculum, f"curriculum.{name}",
              f"phase {name!r} is listed in curriculum.phases but has no section")
    spans, start = [], 0
    for i, name in enumerate(names):
        ph = cfg.curriculum[name]
        steps, fraction = int(ph.get("steps", 0)), float(ph.get("fraction", 0.0))
        _need(not (steps and fraction), f"curriculum.{name}", "give steps or fraction, not both")
        _need(steps >= 0 and 0 <= fraction <= 1, f"curriculum.{name}",
              f"steps must be >= 0 and fraction in [0, 1], got {steps}, {fraction}")
        if steps or fraction:
            length = steps or int(round(fraction * total))
        else:
            _need(i == len(names) - 1, f"curriculum.{name}",
                  "only the last phase may omit its length (it takes the remaining steps)")
            length = total - start
        _need(ph.get("mixture"), f"curriculum.{name}.mixture", "every phase needs a mixture file")
        lr = ph.get("lr_schedule", "continue")
        _need(lr in PHASE_LR, f"curriculum.{name}.lr_schedule", f"must be one of {PHASE_LR}, got {lr!r}")
        overrides = dict(ph.get("data", {}))
        for key in overrides:
            _need(key in cfg.data, f"curriculum.{name}.data.{key}",
                  f"is not a data setting (allowed: {sorted(cfg.data)})")
        spans.append(PhaseSpan(i, name, start, start + length, ph.mixture, overrides, lr))
        start += length
    _need(start == total, "curriculum",
          f"phases {[(s.name, s.end - s.start) for s in spans]} cover {start} steps but "
          f"train.steps is {total}; adjust the phase lengths")
    return spans


def _validate_curriculum(cfg):
    if "curriculum" not in cfg or "train" not in cfg or "data" not in cfg:
        return
    for span in curriculum_phases(cfg):
        _need(span.end > span.start, f"curriculum.{span.name}", "a phase must have at least one step")
        from etils import epath

        path = _find_file(span.mixture)
        _need(epath.Path(path).exists() or "://" in span.mixture, f"curriculum.{span.name}.mixture",
              f"file not found: {span.mixture}")


def _find_file(path: str) -> str:
    """A config path as given, else relative to the repository root (like data files)."""
    import os

    if os.path.isabs(path) or os.path.exists(path) or "://" in path:
        return path
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, path)


register_validator(_validate_curriculum)


# --------------------------------------------------------------------------- fine-tuning

PEFT_METHODS = ("none", "lora", "dora")
PEFT_TARGETS = ("token_embeddings", "qkv_proj", "out_proj", "proj_1", "proj_2")
PEFT_BASE_DTYPES = ("float32", "bfloat16")
SFT_FORMATS = ("auto", "ultrafeedback", "messages", "commonsense")


def _validate_finetune(cfg):
    """The ``peft`` section (LoRA/DoRA, ``elmjax.model.peft``) and ``sft`` (``elmjax.data.sft``)."""
    if "peft" in cfg:
        p = cfg.peft
        _need(p.method in PEFT_METHODS, "peft.method", f"must be one of {PEFT_METHODS}, got {p.method!r}")
        _need(p.base_dtype in PEFT_BASE_DTYPES, "peft.base_dtype",
              f"must be one of {PEFT_BASE_DTYPES}, got {p.base_dtype!r}")
        if p.method != "none":
            _need(isinstance(p.rank, int) and p.rank > 0, "peft.rank",
                  f"must be a positive integer, got {p.rank!r}")
            _need(p.alpha > 0, "peft.alpha", f"must be > 0, got {p.alpha!r}")
            _need(0 <= p.dropout < 1, "peft.dropout", f"must be in [0, 1), got {p.dropout!r}")
            names = [t.strip() for t in p.targets.split(",") if t.strip()]
            bad = [t for t in names if t not in PEFT_TARGETS]
            _need(bool(names) and not bad, "peft.targets",
                  f"must be a comma-separated subset of {PEFT_TARGETS}, got {p.targets!r}")
    if "sft" in cfg:
        s = cfg.sft
        _need(isinstance(s.files, str) and s.files.strip() != "", "sft.files",
              f"must be a non-empty comma-separated list of paths or globs, got {s.files!r}")
        _need(s.format in SFT_FORMATS, "sft.format", f"must be one of {SFT_FORMATS}, got {s.format!r}")
        _need(isinstance(s.window, int) and s.window >= 1, "sft.window",
              f"must be a positive integer, got {s.window!r}")


register_validator(_validate_finetune)


# --------------------------------------------------------------------------- loading


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads ``experiments/NAME.py[:ARG]`` and applies ``--config.a.b=v`` overrides.

    Uses absl's ``config_flags`` so overrides are type-checked against the config.
    Returns the validated config.
    """
    from absl import flags
    from ml_collections import config_flags

    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ConfigError(f"overrides must look like --config.section.key=value, got {bad}")
    argv = ["elmjax", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", default=None, flag_values=fv, lock_config=False,
                                    sys_argv=argv)
    try:
        fv(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
        # unknown key, wrong type, missing or broken config file
        raise ConfigError(f"--config {spec} {' '.join(overrides)}: {e}") from None
    cfg = fv.config
    if cfg is None:
        raise ConfigError(f"--config {spec!r} did not produce a config")
    return validate(cfg)


def describe(cfg: ml_collections.ConfigDict) -> str:
    """A human-readable summary of the model's layer schedule and size."""
    m = cfg.model if "model" in cfg else cfg
    rows = [f"{'layer':>5} {'q_heads':>7} {'kv_heads':>8} {'ffn_dim':>7}"]
    for i, s in enumerate(layer_schedule(m)):
        rows.append(f"{i:>5} {s.num_query_heads:>7} {s.num_kv_heads:>8} {s.ffn_dim:>7}")
    n = param_count(m)
    rows.append(f"parameters: {n:,} ({n / 1e6:.2f} M); model_dim {m.model_dim}, "
                f"head_dim {m.head_dim}, vocab {m.vocab_size}, layers {m.num_layers}")
    return "\n".join(rows)

