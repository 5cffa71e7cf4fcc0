"""Fine-tuning: start from imported or pretrained weights, train all of them or adapters only.

``finetune(cfg, workdir, init)`` loads the starting weights (an apple/OpenELM-style
Hugging Face directory, or an elmjax workdir — a LoRA/DoRA run's weights are merged
first), takes the model's shape from them, and runs the ordinary trainer on the
instruction data of the config's ``sft`` section. With ``peft.method`` lora or dora only
the adapters are trained (``elmjax.model.peft``). The ``--init`` path is recorded in the
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
    from elmjax.data.sft import SFTData
    from elmjax.train import loop
    from elmjax.train.progress import narrate

    if "sft" not in cfg:
        raise config_lib.ConfigError("config section 'sft' is missing: fine-tuning reads the "
                                     "instruction data named by sft.files")
    cfg, params = prepare(cfg, init)
    narrate(f"fine-tuning from {cfg.finetune.init}"
                    + (f" with {cfg.peft.method}" if peft.enabled(cfg) else " (all weights)"))
    return loop.train(cfg, workdir, init_params=params, data=SFTData(cfg))
