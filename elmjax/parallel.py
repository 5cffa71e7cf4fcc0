"""Device mesh, logical-axis rules and shardings for parameters, optimizer state and batches.

Mesh axes are ``data``, ``fsdp`` and ``tensor``. Parameters carry logical axis names
(``embed``, ``qkv``, ``heads``, ``mlp``, ``vocab``, ``norm``), and so do activations
(``batch``, ``length``, ``embed``, ``heads``, ``kv_heads``, ``mlp``, ``vocab``); ``mesh.rules``
maps each to mesh axes, e.g. ``"batch=data+fsdp,embed=fsdp,vocab=tensor,heads=tensor,..."``.
Within one array a mesh axis is used once, first come first served, so an activation
``[batch, length, embed]`` under FSDP is sharded over ``data+fsdp`` on the batch and not
again on ``embed``. A dimension that its mesh axes do not divide (OpenELM's per-layer head
counts make this common under tensor parallelism) is replicated; ``tree_shardings`` logs
each distinct fallback once per call (not once per array), an ``ActivationSharding`` once
per instance (one per jitted train step), and nothing is remembered between calls.

Activations are constrained through :func:`constrain`, which is a no-op unless the caller
traces inside :func:`activation_sharding` (the train step does); single-device calls, the
eval step and decoding see plain arrays.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
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
DEFAULT_RULES = ("batch=data+fsdp,embed=fsdp,vocab=tensor,qkv=tensor,heads=tensor,"
                 "kv_heads=tensor,mlp=tensor")


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
    """The ``(data, fsdp, tensor)`` mesh over all (or the given) devices, laid out by
    ``jax.make_mesh`` along the physical interconnect; over several TPU slices the
    ``data`` axis spans the slices."""
    auto = (jax.sharding.AxisType.Auto,) * 3
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(cfg.mesh, len(devices))
    slices = len({getattr(d, "slice_index", 0) for d in devices})
    if slices > 1:  # multislice: the data axis spans slices (DCN), the rest stays in a slice
        if shape[0] % slices:
            raise ValueError(f"mesh: mesh.data={shape[0]} must be a multiple of the "
                             f"{slices} slices (data parallelism runs across slices)")
        from jax.experimental import mesh_utils

        ici = (shape[0] // slices, shape[1], shape[2])
        grid = mesh_utils.create_hybrid_device_mesh(ici, (slices, 1, 1), devices)
        return Mesh(grid, MESH_AXES, axis_types=auto)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


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


class ActivationSharding:
    """Maps activation logical names to shardings on one mesh; logs each fallback once."""

    def __init__(self, mesh: Mesh, rules: dict[str, tuple[str, ...]]):
        self.mesh, self.rules, self._logged = mesh, rules, set()

    def spec(self, shape, names: tuple) -> P:
        """The mesh ``PartitionSpec`` of an activation of ``shape`` with logical ``names``."""
        fallbacks: list = []
        spec = spec_for(shape, P(*names), self.rules, self.mesh, fallbacks)
        for f in fallbacks:
            if f not in self._logged:
                self._logged.add(f)
                log.warning("replicating an activation dim %s=%d: not divisible by mesh axes %s "
                            "(size %d)", f.name, f.dim, "+".join(f.axes), f.size)
        return spec

    def divides(self, name: str, size: int) -> bool:
        """Whether a dimension ``size`` named ``name`` is split over more than one device."""
        axes = [a for a in self.rules.get(name, ()) if self.mesh.shape[a] > 1]
        n = math.prod(self.mesh.shape[a] for a in axes)
        return n > 1 and size % n == 0

    def constrain(self, x: jax.Array, names: tuple) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, self.spec(x.shape, names)))


_ACTIVE: contextvars.ContextVar[ActivationSharding | None] = contextvars.ContextVar(
    "elmjax_activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(sharding: ActivationSharding):
    """Within this context, :func:`constrain` pins activations to ``sharding``'s mesh.

    Use it around the code a ``jax.jit`` traces (the context is read at trace time).
    """
    token = _ACTIVE.set(sharding)
    try:
        yield sharding
    finally:
        _ACTIVE.reset(token)


def active_sharding() -> ActivationSharding | None:
    """The :class:`ActivationSharding` being traced under, or ``None`` (no mesh)."""
    return _ACTIVE.get()


def constrain(x: jax.Array, names: tuple) -> jax.Array:
    """``x`` with a sharding constraint from logical ``names`` (one per dimension, ``None``
    for an unnamed one); ``x`` unchanged outside :func:`activation_sharding`."""
    ctx = _ACTIVE.get()
    return x if ctx is None else ctx.constrain(x, names)


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
