"""Device mesh, logical-axis rules and shardings for parameters, optimizer state and batches.

Mesh axes are ``data``, ``fsdp`` and ``tensor``. Parameters carry logical axis names
(``embed``, ``qkv``, ``heads``, ``mlp``, ``vocab``, ``norm``); ``mesh.rules`` maps each to
mesh axes, e.g. ``"batch=data+fsdp,embed=fsdp,vocab=tensor,qkv=tensor,heads=tensor,mlp=tensor"``.
A dimension that its mesh axes do not divide (OpenELM's per-layer head counts make this
common under tensor parallelism) is replicated; ``tree_shardings`` logs each distinct
fallback once per call (not once per array), and nothing is remembered between calls.
"""

from __future__ import annotations

import collections
import logging
import math
import os
from typing import NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger("elmjax.parallel")

MESH_AXES = ("data", "fsdp", "tensor")
DEFAULT_RULES = "batch=data+fsdp,embed=fsdp,vocab=tensor,qkv=tensor,heads=tensor,mlp=tensor"


class Fallback(NamedTuple):
    """A logical dimension left replicated: ``dim`` (its size) is not divisible by the
    product ``size`` of the mesh ``axes`` its logical ``name`` maps to."""

    name: str
    dim: int
    axes: tuple
    size: int


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Starts multi-host JAX when needed.

    With no arguments, initialises only where a cluster is detectable (TPU pods, SLURM,
    ``JAX_COORDINATOR_ADDRESS``); with a coordinator ``host:port`` it uses the given values.
    A single process with nothing to detect stays single-host.
    """
    if coordinator:
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
        return
    detectable = any(k in os.environ for k in (
        "SLURM_JOB_ID", "JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"))
    if detectable and int(os.environ.get("SLURM_NTASKS", "2")) > 1:
        jax.distributed.initialize()


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, int, int]:
    """Resolves ``mesh.data/fsdp/tensor`` (one may be -1: the rest) against the device count."""
    sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(f"mesh: {num_devices} devices are not divisible by the fixed axes "
                             f"{dict(zip(MESH_AXES, sizes))}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but {num_devices} devices "
                         f"are available ({dict(zip(MESH_AXES, sizes))}); use -1 for one axis")
    return tuple(sizes)


def make_mesh(cfg, devices=None) -> Mesh:
    """The ``(data, fsdp, tensor)`` mesh over all (or the given) devices."""
    auto = (jax.sharding.AxisType.Auto,) * 3
    if devices is None:
        return jax.make_mesh(mesh_shape(cfg.mesh, jax.device_count()), MESH_AXES, axis_types=auto)
    shape = mesh_shape(cfg.mesh, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def parse_rules(rules: str) -> dict[str, tuple[str, ...]]:
    """``"batch=data+fsdp,embed=fsdp"`` -> ``{"batch": ("data", "fsdp"), "embed": ("fsdp",)}``."""
    out = {}
    for item in filter(None, (r.strip() for r in rules.split(","))):
        name, _, axes = item.partition("=")
        mesh_axes = tuple(a for a in axes.split("+") if a)
        bad = [a for a in mesh_axes if a not in MESH_AXES]
        if bad or not name:
            raise ValueError(f"mesh.rules: bad rule {item!r} (mesh axes are {MESH_AXES})")
        out[name.strip()] = mesh_axes
    return out


def rules_of(cfg) -> dict[str, tuple[str, ...]]:
    return parse_rules(cfg.mesh.get("rules", DEFAULT_RULES))


def spec_for(shape, logical: P | None, rules, mesh: Mesh, fallbacks: list | None = None) -> P:
    """Maps a logical ``PartitionSpec`` to mesh axes, replicating dims the axes don't divide.

    Each such dimension is appended to ``fallbacks`` (a ``Fallback``) when a list is given.
    """
    if logical is None:
        return P()
    out = []
    used: set = set()
    for dim, name in zip(shape, tuple(logical) + (None,) * (len(shape) - len(logical))):
        axes = tuple(a for a in rules.get(name, ()) if mesh.shape[a] > 1 and a not in used)
        size = math.prod(mesh.shape[a] for a in axes)
        if axes and dim % size:
            if fallbacks is not None:
                fallbacks.append(Fallback(name, dim, axes, size))
            axes = ()
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else (axes or None))
    return P(*out)


def tree_shardings(mesh: Mesh, abstract_tree, logical_tree, rules) -> object:
    """NamedShardings for a tree of arrays/ShapeDtypeStructs given its logical specs.

    Dimensions replicated because their mesh axes do not divide them are logged as one
    warning per distinct ``Fallback`` of this call, with the number of arrays it affects.
    """
    fallbacks: list = []
    shardings = jax.tree.map(
        lambda x, spec: NamedSharding(mesh, spec_for(x.shape, spec, rules, mesh, fallbacks)),
        abstract_tree, logical_tree, is_leaf=lambda x: isinstance(x, P) or x is None)
    for f, count in collections.Counter(fallbacks).items():
        log.warning("replicating dim %s=%d of %d array(s): not divisible by mesh axes %s "
                    "(size %d)", f.name, f.dim, count, "+".join(f.axes), f.size)
    return shardings


def opt_state_shardings(tx, mesh: Mesh, abstract_opt_state, param_shardings):
    """Optimizer-state shardings: per-parameter moments follow their parameter, scalars replicate."""
    replicated = NamedSharding(mesh, P())
    # Frozen parameters (a trainable mask) have no state: optax leaves a MaskedNode there.
    masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    shardings = optax.tree_map_params(
        tx, lambda x, s: x if masked(x) else s, abstract_opt_state, param_shardings,
        transform_non_params=lambda _: replicated, is_leaf=masked)
    return jax.tree.map(lambda s: replicated if s is None else s, shardings,
                        is_leaf=lambda x: x is None or isinstance(x, NamedSharding))


def batch_sharding(mesh: Mesh, cfg, ndim: int = 2) -> NamedSharding:
    """Sharding of a ``[batch, length, ...]`` array: batch over the ``batch`` rule's axes."""
    axes = rules_of(cfg).get("batch", ("data", "fsdp"))
    return NamedSharding(mesh, P(axes, *([None] * (ndim - 1))))


def check_batch(cfg, mesh: Mesh) -> None:
    """Raises ``ConfigError`` naming ``train.global_batch_size`` when the training batch
    cannot be split evenly over the devices of the mesh's batch axes."""
    from elmjax.config import ConfigError

    axes = rules_of(cfg).get("batch", ("data", "fsdp"))
    n = math.prod(mesh.shape[a] for a in axes)
    gbs = cfg.train.global_batch_size
    if gbs % n:
        raise ConfigError(
            f"config key 'train.global_batch_size': {gbs} rows cannot be split over the {n} "
            f"devices of the batch mesh axes {'+'.join(axes)} (mesh {dict(mesh.shape)}); use a "
            f"multiple of {n} or change mesh.data / mesh.fsdp")


def global_batch(local: dict, sharding: NamedSharding) -> dict:
    """Turns each host's share ``[local_batch, ...]`` into one global array per key."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}
