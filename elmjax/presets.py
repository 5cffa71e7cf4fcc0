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

from elmjax.config import model_config
from elmjax.model.peft import peft_config

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


def base_config():
    """Every section with Apple's pretraining recipe as the default (REFERENCE.md)."""
    c = ml_collections.ConfigDict()
    c.model = model_config()

    c.data = ml_collections.ConfigDict()
    c.data.mixture = "data_mixtures/quickstart.yaml"
    c.data.tokenizer = "data_mixtures/samples/tokenizer.model"
    c.data.seq_len = 2048
    # Paper filters (0 turns one off): processed characters, tokens with BOS+EOS.
    c.data.min_chars = 200
    c.data.min_tokens = 256
    c.data.long_doc_policy = "split"  # split | truncate (corenet: keep the first seq_len)
    c.data.shuffle_buffer = 1024  # documents per source shuffled (and tokenized) together
    c.data.mix_block_tokens = 0  # sources interleave in blocks of this many tokens; 0 = max(8 * seq_len, 1024)
    c.data.pack_rows = 256  # rows packed (first-fit-decreasing) and shuffled together
    c.data.num_workers = 0  # grain worker processes (mp_prefetch); 0 = in the trainer process
    c.data.worker_buffer_size = 2  # blocks each worker keeps ready
    c.data.prefetch = 2  # batches a background thread keeps ready; 0 = off
    c.data.tokenizer_threads = 1  # SentencePiece threads per process
    # Drop documents whose source `quality_field` scores below this (None: off).
    c.data.min_quality = ml_collections.config_dict.placeholder(float)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 350_000
    c.train.global_batch_size = 2048
    c.train.microbatches = 1
    c.train.seed = 0
    c.train.z_loss = 1e-4
    c.train.max_nonfinite_in_a_row = 5

    c.optim = ml_collections.ConfigDict()
    c.optim.peak_lr = 5.3e-3
    c.optim.init_lr = 1e-6
    c.optim.warmup_steps = 5000
    c.optim.schedule = "cosine"  # cosine | wsd | constant
    c.optim.decay_steps = 350_000  # cosine reaches min_lr_ratio * peak here
    c.optim.wsd_decay_fraction = 0.2  # wsd: final fraction of steps spent decaying
    c.optim.min_lr_ratio = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.1
    c.optim.clip_norm = 1.0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 5000
    c.checkpoint.keep = 3
    c.checkpoint.keep_every = 0  # also keep every M-th step forever (0: off)
    c.checkpoint.adapters_only = False  # PEFT: save adapters (+ their optimizer state), not the base

    c.peft = peft_config()  # LoRA / DoRA (elmjax.model.peft); method "none" trains every weight

    c.log = ml_collections.ConfigDict()
    c.log.every = 10

    # Evaluation during training (`elmjax train`): every N steps (0: off), held-out
    # perplexity on a mixture YAML or a .jsonl/.json/.parquet/.txt file and/or zero-shot
    # tasks read from eval.data_dir (task files, else prepared TFDS datasets: see
    # elmjax.eval.tasks); results go to metrics.jsonl and TensorBoard.
    c.eval = ml_collections.ConfigDict()
    c.eval.every = 0
    c.eval.perplexity = ""
    c.eval.perplexity_docs = 200
    c.eval.tasks = ""  # e.g. "arc_easy,piqa"
    c.eval.data_dir = ""
    c.eval.limit = 0  # documents per task (0: all)
    c.eval.batch_size = 8
    return c


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
    from elmjax.data.sft import sft_config

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
    from elmjax.data.prefs import prefs_config

    c = finetune_config(c, files, steps=steps, batch=2 * pairs, lr=lr, seq_len=seq_len,
                        warmup=warmup, min_lr_ratio=min_lr_ratio)
    del c.sft
    c.prefs = prefs_config(files=files, loss=loss, beta=beta,
                           max_prompt_length=max_prompt_length or seq_len // 2)
    return c
