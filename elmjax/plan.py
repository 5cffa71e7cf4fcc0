"""Plan a training run for a TPU pod without one: AOT-compile the train step for a topology.

``libtpu`` (the ``tpu`` extra) compiles for a named TPU topology on any machine. This
module compiles exactly the program ``elmjax train`` runs — ``train.step.jit_train_step``
with the state's shardings from ``train.state`` and the batch sharding and mesh from
``parallel`` — against abstract inputs on the topology's devices, and reads back XLA's
per-chip memory, FLOPs, estimated step time and collectives. Nothing is allocated or run.

The step time is the TPU compiler's own estimate (``cost_analysis()["optimal_seconds"]``),
not a measurement; tokens/s and MFU derived from it are labelled so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time

import jax
import jax.numpy as jnp
import ml_collections

from elmjax import config as config_lib
from elmjax import parallel, perf
from elmjax.model import attention, schedule
from elmjax.train import state as state_lib
from elmjax.train.step import jit_train_step

GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation: libtpu's topology prefix, HBM per chip, what N counts in Google's
    ``<name>-N`` (``"cores"``: TensorCores, two per chip) and the torus' dimensions."""

    prefix: str
    hbm_bytes: int
    counts: str
    dims: int


# HBM: v5p's is what libtpu reports as available when a program does not fit; the others
# are Google's published per-chip capacities. Peak FLOP/s come from ``perf.PEAK_FLOPS``.
CHIPS = {
    "v4": Chip("v4", 32 * GiB, "cores", 3),
    "v5p": Chip("v5p", int(95.73 * GiB), "cores", 3),
    "v5e": Chip("v5e", 16 * GiB, "chips", 2),
    "v6e": Chip("v6e", 32 * GiB, "chips", 2),
}
ALIASES = {"v5litepod": "v5e", "v6litepod": "v6e"}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


class PlanError(ValueError):
    """A target or config that cannot be planned; the message says why and what to pass."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A TPU slice (or ``num_slices`` of them): Cloud name, libtpu topology, chip count."""

    name: str
    chip: Chip
    topology: str
    chips: int
    num_slices: int = 1


def torus_shape(chips: int, dims: int) -> tuple[int, ...]:
    """Google's slice shape for ``chips`` (a power of two): 3-D from ``2x2x1``, 2-D from ``1x1``,
    doubling the smallest (last of equals) dimension: 64 chips -> 4x4x4, 256 -> 16x16."""
    shape = [2, 2, 1] if dims == 3 else [1, 1]
    n = math.prod(shape)
    if dims == 3 and chips < 4:
        raise PlanError("3-D TPU slices (v4, v5p) start at 4 chips (v5p-8)")
    while n < chips:
        i = max(j for j, s in enumerate(shape) if s == min(shape))
        shape[i] *= 2
        n *= 2
    return tuple(shape)


def parse_target(name: str, num_slices: int = 1) -> Target:
    """``v5p-128`` / ``v5e-256`` / ``v5litepod-16`` / ``v6e-8`` / ``v4-32`` -> a :class:`Target`.

    N counts TensorCores for v4/v5p (two per chip) and chips for v5e/v6e, as Google's names do.
    """
    m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
    gen = ALIASES.get(m.group(1), m.group(1)) if m else None
    if gen not in CHIPS:
        raise PlanError(f"--topology {name!r}: expected <generation>-<N> with generation one of "
                        f"{sorted(CHIPS) + sorted(ALIASES)}, e.g. v5p-128 or v5e-256")
    chip, n = CHIPS[gen], int(m.group(2))
    chips = n // 2 if chip.counts == "cores" else n
    if chips < 1 or chips & (chips - 1) or (chip.counts == "cores" and n % 2):
        raise PlanError(f"--topology {name!r}: N must be a power of two"
                        + (" (TensorCores, two per chip)" if chip.counts == "cores" else ""))
    if num_slices < 1:
        raise PlanError(f"--num-slices must be >= 1, got {num_slices}")
    shape = torus_shape(chips, chip.dims)
    topology = f"{chip.prefix}:{'x'.join(map(str, shape))}"
    return Target(name, chip, topology, chips * num_slices, num_slices)


def target_devices(target: Target) -> list:
    """The (abstract) devices of ``target`` from libtpu; :class:`PlanError` without libtpu."""
    from jax.experimental import topologies

    kwargs = {"chip_config_name": "megacore"} if target.chip.prefix == "v4" else {}
    if target.num_slices > 1:
        kwargs["num_slices"] = target.num_slices
    try:
        return list(topologies.get_topology_desc(platform="tpu", topology_name=target.topology,
                                                 **kwargs).devices)
    except Exception as e:  # noqa: BLE001 - libtpu missing or the topology unknown to it
        raise PlanError(f"cannot describe TPU topology {target.topology!r} ({e}); planning for "
                        f"TPU needs libtpu: pip install -e '.[tpu]'") from None


def collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes of each collective kind's results in a per-device compiled HLO text.

    Each instruction counts once (one in a loop body counts once, not per iteration); for
    async ``*-start`` ops whose result is a tuple, the largest array (the gathered or
    permuted buffer) counts.
    """
    out = dict.fromkeys(COLLECTIVES, 0)
    pattern = re.compile(r"=\s*(\(?[^=]*?\)?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
    for line in hlo.splitlines():
        m = pattern.search(line)
        if not m:
            continue
        sizes = [_array_bytes(dt, dims) for dt, dims in re.findall(r"(\w+)\[([\d,]*)\]", m.group(1))]
        if sizes:
            out[m.group(2)] += max(sizes) if m.group(3) else sum(sizes)
    return out


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4,
                "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}


def _array_bytes(dtype: str, dims: str) -> int:
    return _DTYPE_BYTES.get(dtype, 4) * math.prod(int(d) for d in dims.split(",") if d)


def _bytes_of(text: str) -> float:
    """``"116.12G"`` -> bytes (XLA prints binary units)."""
    num, unit = float(text[:-1]), text[-1].upper()
    return num * 1024 ** "BKMGT".index(unit) if unit in "KMGT" else float(text.rstrip("B"))


def _oom(message: str) -> tuple[float, float] | None:
    """(required, available) bytes from XLA's out-of-memory compile error, if it is one."""
    if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
        return None
    m = re.search(r"\(([\d.]+[KMGT]?)\)[^()]*exceeds[^()]*\(([\d.]+[KMGT]?)\)", message)
    if m:
        return _bytes_of(m.group(1)), _bytes_of(m.group(2))
    m = re.search(r"Used ([\d.]+[KMGT]) of ([\d.]+[KMGT])", message)
    return (_bytes_of(m.group(1)), _bytes_of(m.group(2))) if m else (math.nan, math.nan)


def _peak_flops(kind: str) -> float:
    """Dense bf16 peak FLOP/s of a device kind (``"TPU v5"``...) from ``perf.PEAK_FLOPS``."""
    for prefix, flops in perf.PEAK_FLOPS.items():
        if kind.startswith(prefix):
            return flops
    raise PlanError(f"no peak FLOP/s known for {kind!r}: add it to elmjax.perf.PEAK_FLOPS")


def _state_bytes_per_device(abstract, shardings) -> int:
    """Bytes of the train state held by one device (the largest shard of each leaf)."""
    total = 0
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        total += math.prod(s.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize
    return total


def abstract_batch(cfg, sharding) -> dict:
    """``jax.ShapeDtypeStruct`` leaves of one global train batch (see ``train.step``)."""
    shape = (int(cfg.train.global_batch_size), int(cfg.data.seq_len))
    dtypes = {"inputs": jnp.int32, "targets": jnp.int32, "segment_ids": jnp.int32,
              "positions": jnp.int32, "loss_mask": jnp.float32}
    return {k: jax.ShapeDtypeStruct(shape, d, sharding=sharding) for k, d in dtypes.items()}


def plan(cfg: ml_collections.ConfigDict, target: Target, devices=None) -> dict:
    """The report of :func:`plan_compiled` alone."""
    return plan_compiled(cfg, target, devices)[0]


def plan_compiled(cfg: ml_collections.ConfigDict, target: Target, devices=None):
    """``(report, compiled step or None when it does not fit)``: compiles ``cfg``'s train step for ``target`` and returns the report (a JSON-able dict).

    Keys: ``fits``, ``per_device_bytes`` (arguments + outputs - aliased + temporaries +
    code), ``state_bytes`` (parameters + optimizer state per chip), ``temp_bytes``,
    ``hbm_bytes``, ``margin_bytes``, ``model_flops_per_step`` (``flops_per_token`` x tokens),
    ``xla_flops_per_step`` (the compiled program's, all chips, remat included),
    ``estimated_step_s`` / ``predicted_tokens_per_s`` / ``predicted_mfu`` (the compiler's
    estimate), ``collective_bytes`` (per chip, by kind), ``mesh``, ``topology``, ``chips``,
    ``num_slices``, ``compile_s``, ``config`` (the overrides that matter) and, when it does
    not fit, ``error`` and ``required_bytes`` / ``available_bytes`` from the compiler.
    ``devices``: the target's devices (default: from libtpu).
    """
    devices = target_devices(target) if devices is None else devices
    try:
        mesh = parallel.make_mesh(cfg, devices=devices)
    except ValueError as e:
        raise PlanError(str(e)) from None
    tokens = int(cfg.train.global_batch_size) * int(cfg.data.seq_len)
    model_flops = schedule.flops_per_token(cfg.model, int(cfg.data.seq_len)) * tokens
    report = {
        "topology": target.name, "libtpu_topology": target.topology, "chips": target.chips,
        "num_slices": target.num_slices, "mesh": dict(mesh.shape), "hbm_bytes": target.chip.hbm_bytes,
        "config": {**overrides_of(cfg), **{f"mesh.{k}": v for k, v in mesh.shape.items()}},
        "attention": _attention_on(cfg, target), "model_flops_per_step": model_flops,
        "tokens_per_step": tokens,
    }
    setup = state_lib.setup(cfg, mesh)  # the trainer's optimizer, state layout and shardings
    bsh = parallel.batch_sharding(mesh, cfg)
    report["state_bytes"] = _state_bytes_per_device(setup.abstract, setup.shardings)
    start = time.perf_counter()
    try:
        compiled = jit_train_step(cfg, setup.tx, setup.shardings, bsh, setup.param_transform).lower(
            state_lib.sharded_abstract_state(setup), abstract_batch(cfg, bsh)).compile()
    except Exception as e:  # noqa: BLE001 - XLA reports an over-budget program as an error
        oom = _oom(str(e))
        if oom is None:
            raise
        report.update(fits=False, compile_s=time.perf_counter() - start, xla_flops_per_step=None,
                      estimated_step_s=None, predicted_tokens_per_s=None, predicted_mfu=None,
                      error=str(e).strip().splitlines()[0][:500], required_bytes=oom[0],
                      available_bytes=oom[1], per_device_bytes=oom[0] + report["state_bytes"])
        report["hbm_bytes"] = oom[1] if math.isfinite(oom[1]) else report["hbm_bytes"]
        report["margin_bytes"] = report["hbm_bytes"] - report["per_device_bytes"]
        return report, None
    report["compile_s"] = time.perf_counter() - start
    peak = _peak_flops(devices[0].device_kind)
    mem = compiled.memory_analysis()
    per_device = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                  - mem.alias_size_in_bytes + mem.temp_size_in_bytes
                  + mem.generated_code_size_in_bytes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    raw_s = float(cost.get("optimal_seconds", math.nan))
    # No estimate (None) when the compiler gives none or a negative one: libtpu 0.0.52 does
    # for multislice programs and for v5e/v6e programs at long sequences (BENCHMARKS.md); the
    # raw value is kept in the report.
    step_s = raw_s if raw_s > 0 else None
    report.update(
        per_device_bytes=per_device, temp_bytes=mem.temp_size_in_bytes,
        margin_bytes=target.chip.hbm_bytes - per_device,
        fits=per_device <= target.chip.hbm_bytes,
        xla_flops_per_step=float(cost.get("flops", math.nan)) * target.chips,
        estimated_step_s=step_s,
        compiler_optimal_seconds=raw_s if math.isfinite(raw_s) else None,
        predicted_tokens_per_s=tokens / step_s if step_s else None,
        peak_flops_per_chip=peak,
        predicted_mfu=model_flops / (step_s * target.chips * peak) if step_s else None,
        collective_bytes=collective_bytes(compiled.as_text()),
    )
    return report, compiled


def _attention_on(cfg, target: Target) -> str:
    """The attention implementation the step uses on ``target`` (``auto`` resolved)."""
    impl = cfg.model.attention
    if impl == "auto":
        return "splash" if attention.splash_block(int(cfg.data.seq_len), False) else "xla"
    return impl


def overrides_of(cfg) -> dict:
    """The settings a plan varies, as ``--config.*`` keys -> values."""
    return {"mesh.data": cfg.mesh.data, "mesh.fsdp": cfg.mesh.fsdp, "mesh.tensor": cfg.mesh.tensor,
            "model.remat": cfg.model.remat, "model.attention": cfg.model.attention,
            "train.microbatches": cfg.train.microbatches, "train.loss_chunk": cfg.train.loss_chunk}


def search_space(cfg, chips: int, attentions=("splash", "xla")) -> list[list[dict]]:
    """Groups of override dicts to try; within a group, from fastest-but-largest to smallest
    (remat ``none`` -> ``save_dots`` -> ``full``, then more microbatches), so the first that
    fits is the group's pick. Groups: mesh shapes (pure FSDP, pure data, FSDP x tensor 2/4,
    where the global batch divides) x attention implementations."""
    batch = int(cfg.train.global_batch_size)
    meshes = [(1, chips, 1), (chips, 1, 1)] + [(1, chips // t, t) for t in (2, 4) if chips % t == 0
                                              and chips // t > 1]
    groups = []
    for (d, f, t), attn in itertools.product(meshes, attentions):
        ladder = []
        for micro, remat in itertools.product((1, 2, 4, 8), ("none", "save_dots", "full")):
            if batch % (d * f * micro) == 0:
                ladder.append({"mesh.data": d, "mesh.fsdp": f, "mesh.tensor": t,
                               "model.attention": attn, "model.remat": remat,
                               "train.microbatches": micro})
        if ladder:
            groups.append(ladder)
    return groups


def with_overrides(cfg, overrides: dict):
    """A validated copy of ``cfg`` with dotted ``overrides`` applied."""
    new = ml_collections.ConfigDict(cfg.to_dict())
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        new[section][field] = value
    config_lib.validate(new)
    return new


def search(cfg, target: Target, max_compiles: int = 12, log=print) -> list[dict]:
    """Tries :func:`search_space` (at most ``max_compiles`` compiles); returns the plans that
    fit, fastest (by the compiler's estimate) first, each with its ``overrides``."""
    devices = target_devices(target)
    found, compiles = [], 0
    for group in search_space(cfg, target.chips):
        for overrides in group:
            if compiles >= max_compiles:
                break
            compiles += 1
            report = plan(with_overrides(cfg, overrides), target, devices)
            log(f"  {_overrides_text(overrides)}: "
                + (f"fits, {report['per_device_bytes'] / GiB:.1f} GiB, est. "
                   f"{estimate_text(report)}" if report["fits"] else
                   f"does not fit ({report['per_device_bytes'] / GiB:.1f} GiB)")
                + f" [{report['compile_s']:.0f} s]")
            if report["fits"]:
                found.append({**report, "overrides": overrides})
                break
    return sorted(found, key=lambda r: r["estimated_step_s"] or math.inf)


def estimate_text(r: dict) -> str:
    """``"525.8 ms, MFU 49.6%"`` from a report, or ``"no step estimate"`` when the compiler
    gave none."""
    if not r.get("estimated_step_s"):
        return "no step estimate"
    return f"{r['estimated_step_s'] * 1e3:.1f} ms, MFU {100 * r['predicted_mfu']:.1f}%"


def _overrides_text(overrides: dict) -> str:
    return " ".join(f"--config.{k}={v}" for k, v in overrides.items())


def format_report(r: dict) -> str:
    """The human-readable report of one :func:`plan` result."""
    g = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    mesh = r["mesh"]
    lines = [f"target   {r['topology']} = libtpu {r['libtpu_topology']}"
             + (f" x {r['num_slices']} slices" if r["num_slices"] > 1 else "")
             + f", {r['chips']} chips; mesh data={mesh['data']} fsdp={mesh['fsdp']} "
             f"tensor={mesh['tensor']}; attention {r['attention']}",
             f"config   {_overrides_text(r['config'])}"]
    if not r["fits"]:
        lines += [f"memory   DOES NOT FIT: needs {g(r['per_device_bytes'])} per chip "
                  f"(state {g(r['state_bytes'])} + temporaries {g(r['required_bytes'])}), "
                  f"available {g(r['hbm_bytes'])}",
                  f"compiler {r['error']}",
                  "try      --search, or --config.model.remat=full, more train.microbatches, "
                  "train.loss_chunk, a smaller batch or a larger slice"]
    else:
        lines += [f"memory   {g(r['per_device_bytes'])} per chip of {g(r['hbm_bytes'])} HBM: fits, "
                  f"margin {g(r['margin_bytes'])} (state {g(r['state_bytes'])}, temporaries "
                  f"{g(r['temp_bytes'])})",
                  f"flops    model {r['model_flops_per_step']:.3e} per step, XLA "
                  f"{r['xla_flops_per_step']:.3e} ({r['xla_flops_per_step'] / r['model_flops_per_step']:.2f}x"
                  f", remat and other overhead included)",
                  (f"estimate compiler's estimated step {r['estimated_step_s'] * 1e3:.1f} ms -> "
                   f"{r['predicted_tokens_per_s']:,.0f} tokens/s, MFU {100 * r['predicted_mfu']:.1f}% "
                   f"(the TPU compiler's estimate, not a measurement)" if r["estimated_step_s"]
                   else f"estimate the TPU compiler gave no step-time estimate for this program "
                        f"(its cost model returned {r.get('compiler_optimal_seconds')}); memory, "
                        f"FLOPs and collectives above are still the compiled program's"),
                  "comms    " + ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in
                                          r["collective_bytes"].items() if v)
                  + " per chip per step (each HLO op once)"]
    lines.append(f"compile  {r['compile_s']:.1f} s")
    return "\n".join(lines)
