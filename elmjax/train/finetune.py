"""Fine-tuning: start from imported or pretrained weights, train all of them or adapters only.

``finetune(cfg, workdir, init)`` loads the starting weights (an apple/OpenELM-style
Hugging Face directory, or an elmjax workdir — a LoRA/DoRA run's weights are merged
first), takes the model's shape from them, and runs the ordinary training loop on the
instruction data of the config's ``sft`` section (supervised), or on the preference pairs
of its ``prefs`` section with the preference objective (DPO, RSO's hinge or IPO:
``elmjax.train.preference``; the reference is the starting weights). With ``peft.method``
lora or dora only the adapters are trained (``elmjax.model.peft``).

Preference training is the same command, chosen by the config, rather than an ``elmjax
align`` of its own: everything but the data and the loss — loading ``--init``, LoRA/DoRA,
resuming, checkpoints, export — is fine-tuning's, and one command keeps one code path. The ``--init`` path is recorded in the
run config (``finetune.init``), so an adapters-only run can later be merged and exported
without naming its base again.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
from etils import epath

from elmjax import checkpoint
from elmjax import config as config_lib
from elmjax import storage
from elmjax.interop import hf
from elmjax.model import peft
from elmjax.train import state as state_lib

# Model keys that are run settings, not part of the weights: kept from the run config.
COMPUTE_KEYS = ("name", "dtype", "param_dtype", "attention", "remat")


def load_init(path, cfg) -> tuple[ml_collections.ConfigDict, dict]:
    """``(model section, float32 params)`` of the starting weights at ``path``.

    ``path`` is a Hugging Face directory (``config.json`` + safetensors) or an elmjax workdir
    (its latest checkpoint; LoRA/DoRA adapters merged). The model section has the weights'
    shape and ``cfg.model``'s compute settings (:data:`COMPUTE_KEYS`).
    """
    p = epath.Path(path)
    if (p / hf.CONFIG_NAME).exists():
        init_cfg, params = hf.load_hf(p)
    elif (p / "checkpoints").exists():
        init_cfg, params = load_merged(p)
    else:
        raise FileNotFoundError(f"--init {path}: neither a Hugging Face directory ({hf.CONFIG_NAME}) "
                                f"nor an elmjax workdir (checkpoints/)")
    model = init_cfg.model  # a fresh model section built by the loader
    for key in COMPUTE_KEYS:
        if key in cfg.model:
            model[key] = cfg.model[key]
    return model, params


def load_merged(workdir, step: int | None = None, init: str | None = None):
    """``(config, float32 params)`` of a workdir's checkpoint with any adapters folded in.

    An adapters-only checkpoint is merged onto the base it was trained from: ``init``, or
    the ``finetune.init`` its config recorded.
    """
    saved = checkpoint.saved_config(workdir, step)
    base = None
    if peft.adapters_only(saved):
        init = init or saved.get("finetune", {}).get("init")
        if not init:
            raise ValueError(f"{workdir} holds adapters only and records no base: pass --init")
        _, base = load_init(init, saved)
        dtype = jnp.dtype(saved.peft.base_dtype)  # merge onto the base exactly as it was trained
        base = jax.tree.map(lambda x: jnp.asarray(x, dtype), base)
    return state_lib.load_params(workdir, step, base=base)


def prepare(cfg, init: str) -> tuple[ml_collections.ConfigDict, dict]:
    """The run config with the starting weights' model shape and ``finetune.init`` set, and the
    float32 starting parameters (the frozen base under PEFT)."""
    model, params = load_init(init, cfg)
    cfg.model = model
    if "finetune" not in cfg:
        cfg.finetune = ml_collections.ConfigDict()
    cfg.finetune.init = storage.resolve(init)
    return config_lib.validate(cfg), params


def finetune(cfg, workdir: str, init: str):
    """Fine-tunes from ``init`` in ``workdir`` (resuming if it has checkpoints); returns the
    loop's ``RunResult``."""
    from elmjax.data import prefs  # noqa: F401 - registers the prefs section's validator
    from elmjax.data.sft import SFTData
    from elmjax.train import loop
    from elmjax.train.progress import narrate

    if "sft" not in cfg and "prefs" not in cfg:
        raise config_lib.ConfigError("config sections 'sft' and 'prefs' are missing: fine-tuning "
                                     "reads instruction data (sft.files) or preference pairs "
                                     "(prefs.files)")
    cfg, params = prepare(cfg, init)
    narrate(f"fine-tuning from {cfg.finetune.init}"
            + (f" with {cfg.peft.method}" if peft.enabled(cfg) else " (all weights)")
            + (f", preference loss {cfg.prefs.loss}" if "prefs" in cfg else ""))
    if "prefs" not in cfg:
        return loop.train(cfg, workdir, init_params=params, data=SFTData(cfg))
    return preference_run(cfg, workdir, params)


def preference_run(cfg, workdir: str, params):
    """Preference training (a ``prefs`` section) from the starting weights ``params``.

    What needs the reference's log-probabilities outside the step — the pairs of
    ``prefs.eval_files`` (scored once for the held-out evaluator) and, with
    ``prefs.reference=precomputed``, every training pair (scored once and kept in the
    workdir) — is scored here, before the loop, with the starting weights."""
    from elmjax.data import prefs
    from elmjax.train import loop, preference
    from elmjax.train.progress import narrate

    ref_logps, evaluator = None, None
    precomputed = cfg.prefs.reference == "precomputed"
    if precomputed:
        manager = checkpoint.Checkpointer(workdir, cfg)  # refuse a mismatched run before scoring
        try:
            manager.check_latest_compatible()
        finally:
            manager.close()
    if precomputed or (cfg.prefs.eval_files and cfg.eval.every):
        reference, mesh = reference_params(cfg, params)
        if cfg.prefs.eval_files and cfg.eval.every:
            evaluator = preference.heldout_evaluator(cfg, reference, mesh)
        if precomputed:
            narrate("scoring the reference log-probabilities (once; kept in the workdir)")
            ref_logps = preference.stored_reference(cfg, workdir, reference, mesh)
        del reference
    return loop.train(cfg, workdir, init_params=params, data=prefs.PrefsData(cfg, ref_logps),
                      evaluator=evaluator, objective=preference.preference_objective(cfg))


def reference_params(cfg, params):
    """``(params, mesh)``: the starting weights as the reference scores them — in
    ``peft.base_dtype`` under PEFT (the base the adapters sit on) — sharded over the run's
    mesh by the logical-axis rules."""
    from elmjax import parallel
    from elmjax.model.openelm import logical_axes

    if peft.enabled(cfg):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(cfg.peft.base_dtype)), params)
    mesh = parallel.make_mesh(cfg)
    shardings = parallel.tree_shardings(mesh, params, logical_axes(cfg), parallel.rules_of(cfg))
    return jax.device_put(params, shardings), mesh
