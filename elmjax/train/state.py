"""The one owner of the train-state layout ``{"step", "params", "opt_state"}``.

Everything that needs to know what a train state holds goes through this module: the
training loop (``setup`` / ``restore_or_init``), checkpoints (``checkpointed``: what a
checkpoint stores, e.g. adapters only), and export, evaluation and fine-tuning, which read a
run's parameters back with ``load_params``. With PEFT on, ``params`` is
``{"base", "adapters"}`` and the model sees ``model_params(cfg, params)``. Preference
training with a frozen reference copy (``prefs.reference=model``, all weights trained) holds
``{"policy", "reference"}``: the reference is frozen (no optimizer state), sharded like the
policy, and left out of checkpoints (it is the starting weights, put back on restore).

Following big_vision/MaxText, the state is initialised abstractly first (``jax.eval_shape``),
its shardings come from the logical-axis rules, and the real init is jitted with those
``out_shardings`` so a large model is never materialised whole on one device.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from elmjax import checkpoint as ckpt_lib
from elmjax import parallel
from elmjax.model import peft, schedule
from elmjax.model.openelm import init_params, logical_axes
from elmjax.train import TrainingError
from elmjax.train import optimizer as opt_lib


def preference_reference(cfg) -> str | None:
    """Where a preference run's reference log-probabilities come from: ``"copy"`` (a frozen
    copy in the state), ``"base"`` (PEFT: the base with adapters off), ``"precomputed"``
    (the batch), or None for a run that is not preference training."""
    if "prefs" not in cfg:
        return None
    if cfg.prefs.reference == "precomputed":
        return "precomputed"
    return "base" if peft.enabled(cfg) else "copy"


def train_params(cfg, rng, params=None):
    """The state's parameters: the model's tree (random unless ``params`` is given), with
    PEFT on ``{"base", "adapters"}`` with fresh adapters (see ``elmjax.model.peft.wrap``), or
    with a frozen reference copy ``{"policy", "reference"}`` (two copies of the model's tree)."""
    if params is None:
        params = init_params(cfg, rng)
    if peft.enabled(cfg) and "adapters" not in params:
        params = peft.wrap(cfg, params, jax.random.fold_in(rng, 1))
    if preference_reference(cfg) == "copy" and "policy" not in params:
        params = {"policy": params, "reference": jax.tree.map(jnp.copy, params)}
    return params


def params_logical_axes(cfg):
    """Logical ``PartitionSpec`` tree of :func:`train_params`' output."""
    axes = logical_axes(cfg)
    if preference_reference(cfg) == "copy":
        return {"policy": axes, "reference": axes}
    return peft.logical_axes(cfg, axes) if peft.enabled(cfg) else axes


def checkpointed(cfg, tree):
    """The part of a train-state tree (arrays, shapes or shardings) that checkpoints hold:
    all of it, without ``params["base"]`` under ``checkpoint.adapters_only``, and without a
    preference run's frozen ``params["reference"]`` (the starting weights)."""
    if preference_reference(cfg) == "copy":
        return {**tree, "params": {"policy": tree["params"]["policy"]}}
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
        elif preference_reference(cfg) == "copy" and "policy" not in params:
            target = target["policy"]
        params = jax.device_put(params, target)
    return jax.jit(init, out_shardings=shardings)(rng, params), shardings


def model_params(cfg, params):
    """The parameter tree the model takes, from the state's ``params`` (PEFT: the adapted
    weights, ``peft.apply``; a frozen-reference preference run: the policy; otherwise
    ``params`` itself)."""
    if peft.enabled(cfg):
        return peft.apply(cfg, params["base"], params["adapters"])
    if preference_reference(cfg) == "copy":
        return params["policy"]
    return params


@dataclasses.dataclass
class TrainSetup:
    """How a run's state is built: the optimizer, the state's shapes and shardings, and
    ``param_transform(params, step)`` mapping the state's params to what the objective takes
    (PEFT: the adapted model tree; PEFT preference training with the base as reference:
    ``{"policy": adapted tree, "reference": base}``)."""

    tx: optax.GradientTransformation
    abstract: dict
    shardings: dict
    param_transform: Callable | None
    notes: list[str]


def _with_base_reference(adapted):
    """A PEFT transform that also hands the objective the base: ``{"policy", "reference"}``."""

    def transform(params, step):
        return {"policy": adapted(params, step), "reference": params["base"]}

    return transform


def setup(cfg, mesh, trainable=None) -> TrainSetup:
    """The optimizer, abstract state and shardings of ``cfg`` on ``mesh``.

    ``trainable``: optional tree of bools (False: frozen); with PEFT on it defaults to every
    adapter and no base weight. ``notes`` has a line for the start-up narration.
    """
    notes, transform = [], None
    if peft.enabled(cfg):
        transform = peft.train_transform(cfg)
        if trainable is None:
            trainable = peft.trainable_mask(jax.eval_shape(
                lambda: train_params(cfg, jax.random.key(0))))
        n_train, n_all = peft.trainable_count(cfg), schedule.param_count(cfg)
        notes.append(f"peft {cfg.peft.method}: rank {cfg.peft.rank} on {', '.join(peft.targets_of(cfg))}; "
                     f"{n_train:,} trainable parameters ({n_train / n_all:.3%}), base in "
                     f"{cfg.peft.base_dtype}")
    reference = preference_reference(cfg)
    if reference == "base":
        transform = _with_base_reference(transform)
    if reference == "copy" and trainable is None:
        shapes = jax.eval_shape(lambda: train_params(cfg, jax.random.key(0)))
        trainable = {"policy": jax.tree.map(lambda _: True, shapes["policy"]),
                     "reference": jax.tree.map(lambda _: False, shapes["reference"])}
    if reference is not None:
        notes.append(f"preference training ({cfg.prefs.loss}, beta {cfg.prefs.beta}); reference: "
                     + {"copy": "a frozen copy of the starting weights, scored each step",
                        "base": "the base with the adapters off, scored each step",
                        "precomputed": "log-probabilities scored once before training"}[reference])
    tx = opt_lib.make_optimizer(cfg, trainable)
    abstract = abstract_state(cfg, tx)
    return TrainSetup(tx, abstract, state_shardings(cfg, mesh, tx, abstract), transform, notes)


def sharded_abstract_state(run: TrainSetup):
    """The state as ``jax.ShapeDtypeStruct`` leaves carrying their shardings (to lower and
    compile the train step without allocating it: ``elmjax plan``, sharding tests)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        run.abstract, run.shardings)


def restore_or_init(cfg, run: TrainSetup, mesh, manager, data, init_params=None):
    """``(state, start step, how)``: the newest readable checkpoint of ``manager`` restored onto
    the run's shardings (with ``data``'s position), else a fresh state (random, or from
    ``init_params``). An adapters-only checkpoint is put back onto the base ``init_params``.
    """
    if peft.adapters_only(cfg) and manager.steps() and init_params is None:
        raise TrainingError(f"{manager.directory} holds adapters only (checkpoint.adapters_only): "
                         "give the base weights (elmjax finetune --init) to resume")
    if preference_reference(cfg) == "copy" and manager.steps() and init_params is None:
        raise TrainingError(f"{manager.directory}: a preference run's checkpoints leave out the "
                            "frozen reference; give the starting weights (elmjax finetune --init) "
                            "to resume")
    restored = manager.restore_latest(checkpointed(cfg, run.abstract),
                                      checkpointed(cfg, run.shardings), data)
    if restored is not None:
        state, start = restored
        if peft.adapters_only(cfg):
            base = init_params["base"] if "adapters" in init_params else init_params
            base = jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(cfg.peft.base_dtype)), base)
            state["params"] = {"base": jax.device_put(base, run.shardings["params"]["base"]),
                               **state["params"]}
        if preference_reference(cfg) == "copy":
            reference = init_params["reference"] if "reference" in init_params else init_params
            state["params"] = {**state["params"], "reference": jax.device_put(
                reference, run.shardings["params"]["reference"])}
        return state, start, f"restored step {start} from {manager.directory}"
    state, _ = init_state(cfg, mesh, run.tx, jax.random.key(cfg.train.seed), init_params)
    return state, 0, "initialised a fresh state" + (
        " from given parameters" if init_params is not None else "")


def load_params(workdir, step: int | None = None, cfg=None, base=None):
    """``(config, params)`` of a run's checkpoint (latest by default), on the default device.

    Only the parameters are read (no optimizer state). ``cfg`` overrides the saved config's
    non-shape settings (e.g. ``model.dtype``) when given. A LoRA/DoRA run's parameters come
    back merged (``elmjax.model.peft.merge``: plain float32 weights); a run saved with
    ``checkpoint.adapters_only`` needs its frozen ``base`` (the model's parameter tree).
    """

    def stored_params(saved):
        if peft.adapters_only(saved) and base is None:
            raise ValueError(
                f"{workdir} holds LoRA/DoRA adapters only (checkpoint.adapters_only): the base "
                f"weights are needed too (it was fine-tuned from "
                f"{saved.get('finetune', {}).get('init') or '?'})")
        tree = jax.eval_shape(lambda r: {"params": train_params(saved, r)}, jax.random.key(0))
        return checkpointed(saved, tree)["params"]

    saved, params = ckpt_lib.read_params(workdir, step, stored_params, cfg)
    if preference_reference(saved) == "copy":
        params = params["policy"]
    if peft.enabled(saved):
        params = peft.merge(saved, params["base"] if base is None else base, params["adapters"])
    return saved, params
