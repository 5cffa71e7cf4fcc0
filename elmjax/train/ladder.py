"""A ladder of OpenELM-shaped models and the training budgets of a scaling study.

A rung is a model shape (layers, width, head size) under OpenELM's layer-wise scaling:
per-layer query heads and FFN widths follow the ``qkv``/``ffn`` multiplier ranges (the
paper's α and β) exactly as the model builds them, so every parameter and FLOP count here
comes from the model's own accounting (``param_count`` / ``flops_per_token``), never from
a formula of our own.

Shapes: Apple's four presets are rungs as they are; other sizes follow one rule, width
``model_dim`` on a grid and depth ``round(model_dim / aspect)`` (Apple's presets have
``model_dim / num_layers`` between 73 and 85), head size growing with width.
``shape_for_params`` picks the rung nearest a parameter target.

Budgets: each run's steps come from tokens per parameter (``tokens = r * N``), a total
FLOP budget (``tokens = C / FLOPs per token``: IsoFLOP grids) or an explicit step count.
``sweep_entries`` turns runs into the ``(name, {config key: value})`` list a sweep file's
``get_sweep()`` returns (keys as on the command line, so type-checked like any override).
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from elmjax.model.schedule import flops_per_token, layer_schedule, param_count

# Apple's released shapes: name -> (num_layers, model_dim, head_dim). REFERENCE facts.
OPENELM_PRESETS = {
    "270m": (16, 1280, 64),
    "450m": (20, 1536, 64),
    "1_1b": (28, 2048, 64),
    "3b": (36, 3072, 128),
}


@dataclasses.dataclass(frozen=True)
class Shape:
    """A model shape: depth, width and head size (everything else from the base model)."""

    num_layers: int
    model_dim: int
    head_dim: int

    @property
    def name(self) -> str:
        return f"L{self.num_layers}_d{self.model_dim}"


@dataclasses.dataclass(frozen=True)
class Rung:
    """One model of the ladder and its accounting (from the model's own functions).

    ``overrides``: ``{"model.key": value}`` turning the base config into this model;
    ``params``: all parameters (tied embedding once); ``non_embedding``: without the
    ``vocab x model_dim`` embedding; ``flops_per_token``: training FLOPs per token at the
    sweep's sequence length (causal attention halved).
    """

    shape: Shape
    overrides: dict
    params: int
    non_embedding: int
    flops_per_token: float

    @property
    def name(self) -> str:
        return self.shape.name


@dataclasses.dataclass(frozen=True)
class LadderRun:
    """A rung trained for ``steps`` steps of ``tokens_per_step`` tokens."""

    name: str
    rung: Rung
    steps: int
    tokens: int
    flops: float
    budget: str  # how the steps were chosen, e.g. "20 tok/param", "C=1e+13", "500 steps"


def head_dim_for(model_dim: int) -> int:
    """Head size of the shape rule: 128 from 3072 wide (as OpenELM-3B), 64 from 512, else
    32 from 128, else 16."""
    for width, hd in ((3072, 128), (512, 64), (128, 32)):
        if model_dim >= width:
            return hd
    return 16


def rule_shape(model_dim: int, aspect: float = 80.0, min_layers: int = 2) -> Shape:
    """The shape rule: ``num_layers = max(min_layers, round(model_dim / aspect))``."""
    layers = max(min_layers, int(round(model_dim / aspect)))
    return Shape(layers, model_dim, head_dim_for(model_dim))


def candidate_shapes(aspect: float = 80.0, min_layers: int = 2,
                     max_dim: int = 8192) -> list[Shape]:
    """Every shape the ladder may use: widths 64..``max_dim`` (steps of 32 below 512, 64
    below 2048, 128 above) by the rule, plus Apple's four presets."""
    dims = list(range(64, 512, 32)) + list(range(512, 2048, 64)) + list(range(2048, max_dim + 1, 128))
    shapes = {rule_shape(d, aspect, min_layers) for d in dims}
    shapes.update(Shape(*s) for s in OPENELM_PRESETS.values())
    return sorted(shapes, key=lambda s: (s.model_dim, s.num_layers))


def model_with(base_model: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """A copy of the ``model`` section with ``{"model.key": value}`` overrides applied."""
    m = ml_collections.ConfigDict(base_model.to_dict())
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section != "model" or name not in m:
            raise KeyError(f"ladder override {key!r} is not a model.* key of the base config")
        m[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return m


def make_rung(base_model: ml_collections.ConfigDict, shape: Shape, seq_len: int,
              **model_overrides) -> Rung:
    """The rung of ``shape`` over ``base_model`` (its vocabulary, GQA groups, α/β ranges,
    FFN divisor), with extra ``model_overrides`` (e.g. ``qkv_multipliers=(0.25, 1.0)``).
    Counts are taken at sequence length ``seq_len``."""
    overrides = {"model.num_layers": shape.num_layers, "model.model_dim": shape.model_dim,
                 "model.head_dim": shape.head_dim,
                 **{f"model.{k}": v for k, v in model_overrides.items()}}
    m = model_with(base_model, overrides)
    return Rung(shape, overrides, param_count(m), param_count(m, embeddings=False),
                flops_per_token(m, seq_len, causal=True))


def shape_for_params(target: float, base_model: ml_collections.ConfigDict, seq_len: int,
                     aspect: float = 80.0, min_layers: int = 2) -> Shape:
    """The candidate shape whose parameter count (over ``base_model``) is nearest
    ``target`` in ratio."""
    best = min(candidate_shapes(aspect, min_layers),
               key=lambda s: abs(math.log(make_rung(base_model, s, seq_len).params / target)))
    return best


def ladder(base_model: ml_collections.ConfigDict, seq_len: int, *, targets=(), shapes=(),
           aspect: float = 80.0, min_layers: int = 2, **model_overrides) -> list[Rung]:
    """Rungs for parameter ``targets`` (nearest shapes) and/or explicit ``shapes``,
    smallest first, without duplicates."""
    chosen = {shape_for_params(t, base_model, seq_len, aspect, min_layers) for t in targets}
    chosen.update(Shape(*s) if not isinstance(s, Shape) else s for s in shapes)
    rungs = [make_rung(base_model, s, seq_len, **model_overrides) for s in chosen]
    return sorted(rungs, key=lambda r: r.params)


def _run(rung: Rung, steps: int, tokens_per_step: int, budget: str, name: str) -> LadderRun:
    tokens = steps * tokens_per_step
    return LadderRun(name, rung, steps, tokens, rung.flops_per_token * tokens, budget)


def by_tokens_per_param(rungs, ratio: float, tokens_per_step: int, *, non_embedding=False,
                        min_steps: int = 1) -> list[LadderRun]:
    """Each rung trained on ``ratio`` tokens per parameter (all parameters, or the
    non-embedding ones), rounded to whole steps (at least ``min_steps``)."""
    runs = []
    for r in rungs:
        n = r.non_embedding if non_embedding else r.params
        steps = max(min_steps, int(round(ratio * n / tokens_per_step)))
        runs.append(_run(r, steps, tokens_per_step, f"{ratio:g} tok/param", r.name))
    return runs


def by_steps(rungs, steps: int, tokens_per_step: int) -> list[LadderRun]:
    """Each rung trained for the same explicit number of steps."""
    return [_run(r, steps, tokens_per_step, f"{steps} steps", r.name) for r in rungs]


def isoflop_grid(rungs, budgets, tokens_per_step: int, *, min_steps: int = 1,
                 max_steps: int | None = None, tokens_per_param=None) -> list[LadderRun]:
    """For each total FLOP budget ``C``, every rung with ``steps = round(C / (FLOPs per
    token * tokens_per_step))`` inside ``[min_steps, max_steps]`` and, if given, with tokens
    per parameter inside ``tokens_per_param = (low, high)`` (keeps each budget's sizes near
    its optimum). Run names carry the budget (``L6_d256_C1e13``); a run's ``flops`` is its
    exact count after rounding to steps."""
    lo, hi = tokens_per_param or (0.0, math.inf)
    runs = []
    for budget in budgets:
        for r in rungs:
            steps = int(round(budget / (r.flops_per_token * tokens_per_step)))
            ratio = steps * tokens_per_step / r.params
            if (steps >= min_steps and (max_steps is None or steps <= max_steps)
                    and lo <= ratio <= hi):
                runs.append(_run(r, steps, tokens_per_step, f"C={budget:.3g}",
                                 f"{r.name}_C{budget:.0e}".replace("+", "")))
    return runs


def sweep_entries(runs, *, warmup_fraction: float = 0.1, max_warmup: int | None = None,
                  lr_for=None, extra=None) -> list[tuple[str, dict]]:
    """``[(name, {config key: value})]`` for a sweep file's ``get_sweep()``: the rung's model
    keys, ``train.steps``, ``optim.decay_steps`` (the schedule ends with the run) and
    ``optim.warmup_steps`` (``warmup_fraction`` of the steps, capped at ``max_warmup``).
    ``lr_for(rung) -> peak LR`` sets ``optim.peak_lr`` per size; ``extra`` is added to all."""
    out = []
    for run in runs:
        warmup = max(1, int(round(warmup_fraction * run.steps)))
        if max_warmup is not None:
            warmup = min(warmup, max_warmup)
        keys = {**run.rung.overrides, "train.steps": run.steps, "optim.decay_steps": run.steps,
                "optim.warmup_steps": warmup, **(extra or {})}
        if lr_for is not None:
            keys["optim.peak_lr"] = float(lr_for(run.rung))
        out.append((run.name, keys))
    return out


def describe(runs) -> str:
    """A text table of runs: shape, parameters, FLOPs/token, steps, tokens, FLOPs."""
    rows = [f"{'run':24} {'layers':>6} {'dim':>5} {'params':>12} {'non-emb':>12} "
            f"{'FLOPs/tok':>10} {'steps':>7} {'tokens':>11} {'FLOPs':>10}"]
    for r in runs:
        s = r.rung.shape
        rows.append(f"{r.name:24} {s.num_layers:>6} {s.model_dim:>5} {r.rung.params:>12,} "
                    f"{r.rung.non_embedding:>12,} {r.rung.flops_per_token:>10.3g} {r.steps:>7} "
                    f"{r.tokens:>11,} {r.flops:>10.3g}")
    return "\n".join(rows)


def per_layer(base_model: ml_collections.ConfigDict, rung: Rung) -> list:
    """The rung's per-layer ``LayerSpec`` list (query heads, kv heads, FFN width)."""
    return layer_schedule(model_with(base_model, rung.overrides))
