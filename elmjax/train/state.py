"""The train state ``{"step", "params", "opt_state"}``: shapes, shardings and sharded init.

Following big_vision/MaxText, the state is initialised abstractly first (``jax.eval_shape``),
its shardings come from the logical-axis rules, and the real init is jitted with those
``out_shardings`` so a large model is never materialised whole on one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from elmjax import parallel
from elmjax.model import peft
from elmjax.model.openelm import init_params, logical_axes


def train_params(cfg, rng, params=None):
    """The state's parameters: the model's tree (random unless ``params`` is given), or with
    PEFT on, ``{"base", "adapters"}`` with fresh adapters (see ``elmjax.model.peft.wrap``)."""
    if params is None:
        params = init_params(cfg, rng)
    if peft.enabled(cfg) and "adapters" not in params:
        params = peft.wrap(cfg, params, jax.random.fold_in(rng, 1))
    return params


def params_logical_axes(cfg):
    """Logical ``PartitionSpec`` tree of :func:`train_params`' output."""
    axes = logical_axes(cfg)
    return peft.logical_axes(cfg, axes) if peft.enabled(cfg) else axes


def checkpointed(cfg, tree):
    """The part of a train-state tree (arrays, shapes or shardings) that checkpoints hold:
    all of it, or without ``params["base"]`` under ``checkpoint.adapters_only``."""
    if not peft.adapters_only(cfg):
        return tree
    return {**tree, "params": {"adapters": tree["params"]["adapters"]}}


def abstract_state(cfg, tx):
    """Shapes/dtypes of the train state, as ``jax.ShapeDtypeStruct`` leaves."""

    def init(rng):
        params = train_params(cfg, rng)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    return jax.eval_shape(init, jax.random.key(0))


def state_shardings(cfg, mesh, tx, abstract=None):
    """``NamedSharding`` tree for the train state on ``mesh`` (params by the logical rules,
    optimizer moments like their parameters, scalars replicated)."""
    abstract = abstract_state(cfg, tx) if abstract is None else abstract
    rules = parallel.rules_of(cfg)
    params_sh = parallel.tree_shardings(mesh, abstract["params"], params_logical_axes(cfg), rules)
    return {"step": NamedSharding(mesh, P()),
            "params": params_sh,
            "opt_state": parallel.opt_state_shardings(tx, mesh, abstract["opt_state"], params_sh)}


def init_state(cfg, mesh, tx, rng, params=None):
    """A freshly initialised (or, given ``params``, freshly wrapped) sharded train state.

    With PEFT on, ``params`` may be the model's tree (the base; adapters are initialised
    from ``rng``) or already ``{"base", "adapters"}``.
    """
    shardings = state_shardings(cfg, mesh, tx)

    def init(rng, params):
        params = train_params(cfg, rng, params)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    if params is not None:
        target = shardings["params"]
        if peft.enabled(cfg) and "adapters" not in params:
            target = target["base"]
        params = jax.device_put(params, target)
    return jax.jit(init, out_shardings=shardings)(rng, params), shardings
