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
from elmjax.model.openelm import init_params, logical_axes


def abstract_state(cfg, tx):
    """Shapes/dtypes of the train state, as ``jax.ShapeDtypeStruct`` leaves."""

    def init(rng):
        params = init_params(cfg, rng)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    return jax.eval_shape(init, jax.random.key(0))


def state_shardings(cfg, mesh, tx, abstract=None):
    """``NamedSharding`` tree for the train state on ``mesh`` (params by the logical rules,
    optimizer moments like their parameters, scalars replicated)."""
    abstract = abstract_state(cfg, tx) if abstract is None else abstract
    rules = parallel.rules_of(cfg)
    params_sh = parallel.tree_shardings(mesh, abstract["params"], logical_axes(cfg), rules)
    return {"step": NamedSharding(mesh, P()),
            "params": params_sh,
            "opt_state": parallel.opt_state_shardings(tx, mesh, abstract["opt_state"], params_sh)}


def init_state(cfg, mesh, tx, rng, params=None):
    """A freshly initialised (or, given ``params``, freshly wrapped) sharded train state."""
    shardings = state_shardings(cfg, mesh, tx)

    def init(rng, params):
        params = init_params(cfg, rng) if params is None else params
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    if params is not None:
        params = jax.device_put(params, shardings["params"])
    return jax.jit(init, out_shardings=shardings)(rng, params), shardings
