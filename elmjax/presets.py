"""Building blocks of the run configs in ``experiments/``: shared defaults and recipes.

A preset file ``experiments/NAME.py`` defines ``get_config(arg)``; it starts from
``base_config()`` (every section, Apple's pretraining recipe) or ``openelm_config(size)``
and parses a small argument string (``experiments/openelm_270m.py:smoke=True``) with
``parse_arg``. Preset files are loaded by path (``--config FILE``), never installed as a
package; one preset builds on another with ``sibling(__file__, "NAME")``.
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections

from elmjax.config import default_config, prefs_config, sft_config

# Apple's released models: (num_layers, model_dim, head_dim, peak learning rate).
OPENELM_SIZES = {
    "270m": (16, 1280, 64, 5.3e-3),
    "450m": (20, 1536, 64, 3.9e-3),
    "1_1b": (28, 2048, 64, 2.4e-3),
    "3b": (36, 3072, 128, 1.2e-3),
}


def parse_arg(arg, **defaults):
    """Parses ``"k=v,k2=v2"`` into a ConfigDict over ``defaults`` (values typed like the default)."""
    out = ml_collections.ConfigDict(defaults)
    if not arg:
        return out
    for item in arg.split(","):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; allowed: {sorted(defaults)}")
        kind = type(defaults[key])
        if kind is bool:
            out[key] = value.lower() in ("1", "true", "yes", "on")
        else:
            out[key] = kind(value)
    return out


def config_module(path) -> types.ModuleType:
    """The Python module of a config file ``path`` (a preset or sweep), loaded by path.

    The module is not added to ``sys.modules``: each call runs the file afresh.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    name = "elmjax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sibling(file, name: str) -> types.ModuleType:
    """The preset ``NAME.py`` in the folder of ``file`` (a preset's ``__file__``)."""
    return config_module(os.path.join(os.path.dirname(os.path.abspath(file)), f"{name}.py"))


def base_config() -> ml_collections.ConfigDict:
    """Every section with Apple's pretraining recipe as the defaults (``elmjax.config.default_config``)."""
    return default_config()


def openelm_config(size, smoke=False):
    """One of Apple's four presets, optionally shrunk to a CPU-sized smoke run."""
    layers, dim, head_dim, lr = OPENELM_SIZES[size]
    c = base_config()
    c.model.name = f"openelm-{size}"
    c.model.num_layers = layers
    c.model.model_dim = dim
    c.model.head_dim = head_dim
    c.model.dtype = "bfloat16"
    # Activation checkpointing from 450M up, as Apple trained them.
    c.model.remat = "none" if size == "270m" else "full"
    c.optim.peak_lr = lr
    if size == "3b":
        c.mesh.fsdp = -1
    if smoke:
        c.model.dtype = "float32"
        c.data.seq_len = 128
        c.train.steps = 4
        c.train.global_batch_size = 2
        c.optim.warmup_steps = 2
        c.optim.decay_steps = 4
        c.checkpoint.every = 2
        c.log.every = 1
    return c


def two_phase_curriculum(c, phase1_mixture, phase2_mixture, phase2_start=0.8,
                         phase2_min_chars=400, phase2_min_quality=0.9, decay_in_phase2=False):
    """Adds an OpenELM-style two-phase curriculum to config ``c`` (in place).

    Phase ``web`` (general knowledge, heavily filtered web) runs for the first
    ``phase2_start`` fraction of ``train.steps``; phase ``refined`` (a refined subset plus
    synthetic data, with stricter length and quality filters) takes the rest. With
    ``decay_in_phase2`` the learning rate is warmup-then-flat in phase 1 and decays to the
    floor across phase 2 (warmup-stable-decay split at the phase boundary).
    """
    c.curriculum = ml_collections.ConfigDict()
    c.curriculum.phases = "web,refined"
    c.curriculum.web = ml_collections.ConfigDict(dict(
        mixture=phase1_mixture, steps=0, fraction=phase2_start, lr_schedule="continue",
        data=ml_collections.ConfigDict()))
    c.curriculum.refined = ml_collections.ConfigDict(dict(
        mixture=phase2_mixture, steps=0, fraction=0.0,
        lr_schedule="linear_decay" if decay_in_phase2 else "continue",
        data=ml_collections.ConfigDict(dict(min_chars=phase2_min_chars,
                                            min_quality=phase2_min_quality))))
    if decay_in_phase2:
        c.optim.schedule = "constant"
    return c


def finetune_config(c, files, *, steps, batch, lr, seq_len, warmup, min_lr_ratio, pack=True):
    """Turns a pretraining config into an instruction-tuning one (``elmjax finetune``).

    Adds the ``sft`` section (instruction data ``files``; OpenELM-Instruct's chat template)
    and sets the schedule: AdamW with no weight decay, warm-up, cosine to
    ``min_lr_ratio * lr`` at the last step, no z-loss.
    """
    c.sft = sft_config(files=files, pack=pack)
    c.data.seq_len = seq_len
    c.train.steps = steps
    c.train.global_batch_size = batch
    c.train.z_loss = 0.0
    c.optim.peak_lr = lr
    c.optim.init_lr = 0.0
    c.optim.warmup_steps = warmup
    c.optim.decay_steps = steps
    c.optim.min_lr_ratio = min_lr_ratio
    c.optim.weight_decay = 0.0
    c.checkpoint.every = max(steps // 5, 1)
    return c


def preference_config(c, files, *, steps, pairs, lr, seq_len, warmup, min_lr_ratio, loss="sigmoid",
                      beta=0.1, max_prompt_length=None):
    """Turns a pretraining config into a preference-training one (``elmjax finetune`` with a
    ``prefs`` section): ``finetune_config``'s schedule, ``pairs`` pairs (``2 * pairs`` rows)
    per step, the pair data ``files`` with the SFT chat template, ``loss`` and ``beta``;
    prompts are cut to ``max_prompt_length`` tokens (default half of ``seq_len``) first."""
    from elmjax.data import prefs  # noqa: F401 - registers the prefs section's validator

    c = finetune_config(c, files, steps=steps, batch=2 * pairs, lr=lr, seq_len=seq_len,
                        warmup=warmup, min_lr_ratio=min_lr_ratio)
    del c.sft
    c.prefs = prefs_config(files=files, loss=loss, beta=beta,
                           max_prompt_length=max_prompt_length or seq_len // 2)
    return c
