"""Run configs: the schema with its defaults (in one place), validation, path resolution.

A run is described by one ml-collections ``ConfigDict`` with the sections ``model``,
``data``, ``train``, ``optim``, ``mesh``, ``checkpoint``, ``peft``, ``log``, ``eval`` (and
``sft``, ``curriculum``, ``finetune`` where a run uses them). :func:`default_config` holds
every default (Apple's recipe); presets in ``experiments/`` state only what differs.

:func:`load` reads ``experiments/NAME.py[:ARG]`` with type-checked ``--config.a.b=v``
overrides, validates the whole config once (every error names the key and what is allowed),
and resolves every path in it once (:func:`resolve_paths`, ``elmjax.storage.resolve``).
Sections owned by other modules are validated by functions those modules register
(:func:`register_validator`): the model's layer schedule (``elmjax.model.schedule``) and
the curriculum (``elmjax.data.curriculum``).
"""

from __future__ import annotations

import os
from typing import Sequence

import ml_collections

from elmjax import storage

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "einsum", "splash")  # elmjax.model.attention
REMAT_POLICIES = ("none", "full", "save_dots")
SCHEDULES = ("cosine", "wsd", "constant")
LONG_DOC_POLICIES = ("split", "truncate")
PEFT_METHODS = ("none", "lora", "dora")
PEFT_TARGETS = ("token_embeddings", "qkv_proj", "out_proj", "proj_1", "proj_2")
PEFT_BASE_DTYPES = ("float32", "bfloat16")
SFT_FORMATS = ("auto", "ultrafeedback", "messages", "commonsense")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and what is allowed."""


def need(cond: bool, key: str, msg: str) -> None:
    """Raises ``ConfigError("config key '<key>': <msg>")`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"config key '{key}': {msg}")


# --------------------------------------------------------------------------- schema and defaults


def model_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the ``model`` section (the OpenELM-270M shape), updated by ``overrides``."""
    m = ml_collections.ConfigDict(
        dict(
            name="openelm",
            num_layers=16,
            model_dim=1280,
            head_dim=64,
            num_gqa_groups=4,  # query heads per kv head
            qkv_multipliers=(0.5, 1.0),
            ffn_multipliers=(0.5, 4.0),
            ffn_dim_divisor=256,
            vocab_size=32000,
            rope_freq_constant=10000.0,
            rope_max_length=4096,
            max_context_length=2048,
            normalize_qk=True,
            norm_eps=1e-6,
            # Explicit per-layer widths (from a Hugging Face config.json); when set
            # they replace the multiplier formula. ``None`` means "compute".
            num_query_heads=ml_collections.FieldReference(None, field_type=tuple),
            num_kv_heads=ml_collections.FieldReference(None, field_type=tuple),
            ffn_dims=ml_collections.FieldReference(None, field_type=tuple),
            dtype="float32",  # compute dtype; params stay float32
            param_dtype="float32",
            attention="auto",  # splash on TPU, xla elsewhere (elmjax.model.attention)
            remat="none",
            init_std=ml_collections.FieldReference(None, field_type=float),
        )
    )
    m.update(overrides)
    return m


def peft_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the ``peft`` section (off), updated by ``overrides``.

    ``method`` none | lora | dora; ``rank`` r; ``alpha`` (scale ``alpha / rank``);
    ``dropout`` on the adapter input path (see the module docstring); ``targets`` a
    comma-separated subset of :data:`PEFT_TARGETS`; ``base_dtype`` float32 | bfloat16 for the
    frozen base.
    """
    c = ml_collections.ConfigDict(dict(method="none", rank=8, alpha=16.0, dropout=0.0,
                                       targets="qkv_proj,out_proj,proj_1,proj_2",
                                       base_dtype="float32"))
    c.update(overrides)
    return c


ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def sft_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the ``sft`` section, updated by ``overrides``.

    ``files``: comma-separated paths or globs; ``format``: auto | ultrafeedback | messages |
    commonsense; ``system``/``user``/``assistant``: per-role templates with ``{content}``;
    ``add_bos``: start each conversation with BOS; ``alpaca_with_input``/``alpaca_no_input``:
    the CommonSense prompt (``{instruction}``, ``{input}``); ``pack``: pack conversations
    into rows (False: one padded row each); ``window``: records tokenized together.
    """
    c = ml_collections.ConfigDict(dict(
        files="data_mixtures/samples/sft/ultrafeedback.jsonl", format="auto",
        system="<|system|>\n{content}</s>", user="<|user|>\n{content}</s>",
        assistant="<|assistant|>\n{content}</s>", add_bos=True,
        alpaca_with_input=ALPACA_WITH_INPUT, alpaca_no_input=ALPACA_NO_INPUT,
        pack=True, window=256))
    c.update(overrides)
    return c


def prefs_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of the ``prefs`` section (preference training), updated by ``overrides``.

    Data (``elmjax.data.prefs``): ``files`` (comma-separated paths or globs); ``format`` auto
    | ultrafeedback | plain; ``system``/``user``/``assistant``/``add_bos``: the chat template
    (``sft``'s defaults); ``max_prompt_length`` (tokens, BOS included) and ``truncation``
    keep_end | keep_start. Objective (``elmjax.train.preference``): ``loss`` sigmoid (DPO) |
    hinge (RSO) | ipo; ``beta``; ``label_smoothing`` (conservative DPO, sigmoid only);
    ``reference`` model (a frozen copy, or under LoRA/DoRA the base with adapters off, scored
    each step) | precomputed (scored once before training, stored in the workdir);
    ``eval_files``: held-out pairs scored every ``eval.every`` steps ("" for none).
    """
    s = sft_config()
    c = ml_collections.ConfigDict(dict(
        files="data_mixtures/samples/prefs/train.jsonl", format="auto",
        system=s.system, user=s.user, assistant=s.assistant, add_bos=s.add_bos,
        max_prompt_length=512, truncation="keep_end",
        loss="sigmoid", beta=0.1, label_smoothing=0.0, reference="model", eval_files=""))
    c.update(overrides)
    return c


def default_config() -> ml_collections.ConfigDict:
    """Every section of a run config, with Apple's pretraining recipe as the defaults
    (``docs/openelm.md``); presets in ``experiments/`` state only what differs."""
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
    c.data.allow_resplit = False  # resume on another host count: re-split the data (new epoch)
    # Drop documents whose source `quality_field` scores below this (None: off).
    c.data.min_quality = ml_collections.config_dict.placeholder(float)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 350_000
    c.train.global_batch_size = 2048
    c.train.microbatches = 1
    # Tokens per row whose float32 logits exist at once in the loss (0: whole rows); see
    # elmjax.train.step.token_losses.
    c.train.loss_chunk = 0
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
    # A jax.profiler trace of `profile_steps` steps from step `profile_start` (0 steps: off),
    # written to WORKDIR/profile (TensorBoard's profile plugin or Perfetto read it).
    c.log.profile_start = 10
    c.log.profile_steps = 0

    # Evaluation during training (`elmjax train`): every N steps (0: off), held-out
    # perplexity on a mixture YAML or a .jsonl/.json/.parquet/.txt file and/or tasks and
    # suites (elmjax.eval.suites, with their shot counts) read from eval.data_dir (task files, else prepared TFDS datasets: see
    # elmjax.eval.tasks); results go to metrics.jsonl and TensorBoard.
    c.eval = ml_collections.ConfigDict()
    c.eval.every = 0
    c.eval.perplexity = ""
    c.eval.perplexity_docs = 200
    c.eval.tasks = ""  # e.g. "arc_easy,piqa", or suites "zero_shot,openllm,llm360"
    c.eval.data_dir = ""
    c.eval.limit = 0  # documents per task (0: all)
    c.eval.batch_size = 8
    return c


# --------------------------------------------------------------------------- validation


def validate_model(m: ml_collections.ConfigDict, prefix: str = "model") -> None:
    """Checks the ``model`` section; raises ``ConfigError`` naming the key."""
    for key in ("num_layers", "model_dim", "head_dim", "num_gqa_groups", "vocab_size",
                "ffn_dim_divisor", "rope_max_length", "max_context_length"):
        need(isinstance(m[key], int) and m[key] > 0, f"{prefix}.{key}",
             f"must be a positive integer, got {m[key]!r}")
    need(m.dtype in DTYPES, f"{prefix}.dtype", f"must be one of {DTYPES}, got {m.dtype!r}")
    need(m.param_dtype in DTYPES, f"{prefix}.param_dtype",
         f"must be one of {DTYPES}, got {m.param_dtype!r}")
    need(m.attention in ATTENTION_IMPLS, f"{prefix}.attention",
         f"must be one of {ATTENTION_IMPLS}, got {m.attention!r}")
    need(m.remat in REMAT_POLICIES, f"{prefix}.remat",
         f"must be one of {REMAT_POLICIES}, got {m.remat!r}")
    need(m.norm_eps > 0, f"{prefix}.norm_eps", f"must be > 0, got {m.norm_eps}")
    need(m.head_dim % 2 == 0, f"{prefix}.head_dim", "must be even (rotary embeddings)")
    for key in ("qkv_multipliers", "ffn_multipliers"):
        v = tuple(m[key])
        need(len(v) in (2, m.num_layers) and all(x > 0 for x in v), f"{prefix}.{key}",
             f"must be (low, high) or one positive value per layer, got {v}")
    for key in ("num_query_heads", "num_kv_heads", "ffn_dims"):
        if m[key] is not None:
            need(len(m[key]) == m.num_layers, f"{prefix}.{key}",
                 f"must have num_layers={m.num_layers} entries, got {len(m[key])}")
    for check in _MODEL_VALIDATORS:
        check(m, prefix)


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates a whole run config before anything compiles; returns it unchanged.

    Raises ``ConfigError`` whose message names the offending key and the allowed values.
    """
    need("model" in cfg, "model", "section is missing")
    validate_model(cfg.model)
    for validator in _SECTION_VALIDATORS:
        validator(cfg)
    return cfg


_SECTION_VALIDATORS: list = []
_MODEL_VALIDATORS: list = []


def register_validator(fn, model: bool = False):
    """Adds a validator owned by another module: ``fn(cfg)`` for a whole config, or with
    ``model=True`` ``fn(model_section, prefix)`` run by :func:`validate_model`."""
    registry = _MODEL_VALIDATORS if model else _SECTION_VALIDATORS
    if fn not in registry:
        registry.append(fn)
    return fn


def _validate_train(cfg):
    if "train" in cfg:
        t = cfg.train
        need(t.steps >= 0, "train.steps", f"must be >= 0, got {t.steps}")
        need(t.global_batch_size > 0, "train.global_batch_size",
             f"must be positive, got {t.global_batch_size}")
        need(t.microbatches >= 1 and t.global_batch_size % t.microbatches == 0,
             "train.microbatches",
             f"must be >= 1 and divide train.global_batch_size={t.global_batch_size}, "
             f"got {t.microbatches}")
    if "optim" in cfg:
        o = cfg.optim
        need(o.schedule in SCHEDULES, "optim.schedule",
             f"must be one of {SCHEDULES}, got {o.schedule!r}")
        need(o.peak_lr > 0, "optim.peak_lr", f"must be > 0, got {o.peak_lr}")
        need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio",
             f"must be in [0, 1], got {o.min_lr_ratio}")
        need(o.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if "mesh" in cfg:
        for key in ("data", "fsdp", "tensor"):
            v = cfg.mesh[key]
            need(isinstance(v, int) and (v > 0 or v == -1), f"mesh.{key}",
                 f"must be a positive integer or -1 (the rest of the devices), got {v!r}")
        need([cfg.mesh[k] for k in ("data", "fsdp", "tensor")].count(-1) <= 1, "mesh",
             "at most one of mesh.data / mesh.fsdp / mesh.tensor may be -1")
    if "log" in cfg:
        need(isinstance(cfg.log.every, int) and cfg.log.every >= 1, "log.every",
             f"must be a positive integer, got {cfg.log.every!r}")
        for key in ("profile_start", "profile_steps"):
            if key in cfg.log:
                need(isinstance(cfg.log[key], int) and cfg.log[key] >= 0, f"log.{key}",
                     f"must be an integer >= 0, got {cfg.log[key]!r}")
        if cfg.log.get("profile_steps", 0):
            need(cfg.log.profile_start >= 1, "log.profile_start",
                 "must be >= 1 (the trace starts after that many steps)")
    if "data" in cfg and "seq_len" in cfg.data:
        need(0 < cfg.data.seq_len <= cfg.model.rope_max_length, "data.seq_len",
             f"must be in [1, model.rope_max_length={cfg.model.rope_max_length}], "
             f"got {cfg.data.seq_len}")


register_validator(_validate_train)


def _validate_data(cfg):
    if "data" not in cfg:
        return
    d = cfg.data
    for key in ("mixture", "tokenizer"):
        if key in d:
            need(isinstance(d[key], str) and d[key], f"data.{key}",
                 f"must be a non-empty path, got {d[key]!r}")
    for key in ("min_chars", "min_tokens", "num_workers", "prefetch", "mix_block_tokens"):
        if key in d:
            need(isinstance(d[key], int) and d[key] >= 0, f"data.{key}",
                 f"must be an integer >= 0 (0 turns it off / means auto), got {d[key]!r}")
    for key in ("shuffle_buffer", "pack_rows", "worker_buffer_size", "tokenizer_threads"):
        if key in d:
            need(isinstance(d[key], int) and d[key] >= 1, f"data.{key}",
                 f"must be a positive integer, got {d[key]!r}")
    if "long_doc_policy" in d:
        need(d.long_doc_policy in LONG_DOC_POLICIES, "data.long_doc_policy",
             f"must be one of {LONG_DOC_POLICIES}, got {d.long_doc_policy!r}")


register_validator(_validate_data)


def _validate_finetune(cfg):
    """The ``peft`` section (LoRA/DoRA, ``elmjax.model.peft``) and ``sft`` (``elmjax.data.sft``)."""
    if "peft" in cfg:
        p = cfg.peft
        need(p.method in PEFT_METHODS, "peft.method", f"must be one of {PEFT_METHODS}, got {p.method!r}")
        need(p.base_dtype in PEFT_BASE_DTYPES, "peft.base_dtype",
             f"must be one of {PEFT_BASE_DTYPES}, got {p.base_dtype!r}")
        if p.method != "none":
            need(isinstance(p.rank, int) and p.rank > 0, "peft.rank",
                 f"must be a positive integer, got {p.rank!r}")
            need(p.alpha > 0, "peft.alpha", f"must be > 0, got {p.alpha!r}")
            need(0 <= p.dropout < 1, "peft.dropout", f"must be in [0, 1), got {p.dropout!r}")
            names = [t.strip() for t in p.targets.split(",") if t.strip()]
            bad = [t for t in names if t not in PEFT_TARGETS]
            need(bool(names) and not bad, "peft.targets",
                 f"must be a comma-separated subset of {PEFT_TARGETS}, got {p.targets!r}")
    if "sft" in cfg:
        s = cfg.sft
        need(isinstance(s.files, str) and s.files.strip() != "", "sft.files",
             f"must be a non-empty comma-separated list of paths or globs, got {s.files!r}")
        need(s.format in SFT_FORMATS, "sft.format", f"must be one of {SFT_FORMATS}, got {s.format!r}")
        need(isinstance(s.window, int) and s.window >= 1, "sft.window",
             f"must be a positive integer, got {s.window!r}")


register_validator(_validate_finetune)


# --------------------------------------------------------------------------- paths

# Keys holding one path, and keys holding a comma-separated list of paths or globs.
PATH_KEYS = ("data.mixture", "data.tokenizer", "eval.perplexity", "eval.data_dir",
             "finetune.init")
PATH_LIST_KEYS = ("sft.files", "prefs.files", "prefs.eval_files")


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            return None
        node = node[part]
    return node


def _set(cfg, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value


def resolve_paths(cfg: ml_collections.ConfigDict, cwd: str | None = None) -> ml_collections.ConfigDict:
    """Resolves every path in ``cfg`` in place (``elmjax.storage.resolve``); returns ``cfg``.

    Covers :data:`PATH_KEYS`, :data:`PATH_LIST_KEYS` and each curriculum phase's
    ``mixture``. Idempotent: resolved paths resolve to themselves.
    """
    for key in PATH_KEYS:
        value = _get(cfg, key)
        if isinstance(value, str) and value:
            _set(cfg, key, storage.resolve(value, cwd))
    for key in PATH_LIST_KEYS:
        value = _get(cfg, key)
        if isinstance(value, str) and value:
            _set(cfg, key, storage.resolve_list(value, cwd))
    phases = _get(cfg, "curriculum.phases")
    if phases:
        for name in (n.strip() for n in phases.split(",") if n.strip()):
            mixture = _get(cfg, f"curriculum.{name}.mixture")
            if isinstance(mixture, str) and mixture:
                cfg.curriculum[name].mixture = storage.resolve(mixture, cwd)
    return cfg


# --------------------------------------------------------------------------- loading


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads ``experiments/NAME.py[:ARG]`` and applies ``--config.a.b=v`` overrides.

    Uses absl's ``config_flags`` so overrides are type-checked against the config. Returns
    the validated config with its paths resolved (:func:`resolve_paths`).
    """
    from absl import flags
    from ml_collections import config_flags

    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ConfigError(f"overrides must look like --config.section.key=value, got {bad}")
    path = storage.resolve(spec.split(":", 1)[0])
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"--config {path} {what}: give a config file such as "
                          f"experiments/quickstart.py")
    argv = ["elmjax", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", default=None, flag_values=fv, lock_config=False,
                                    sys_argv=argv)
    try:
        fv(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
        # unknown key, wrong type, missing or broken config file
        detail, quotes = str(e), " "
        if "\\n" in detail:  # absl's message for an unknown key is a nested KeyError repr
            detail, quotes = detail.replace("\\n", "\n").replace("\\'", "'"), " '"
        detail = "; ".join(x.strip(quotes) for x in detail.splitlines() if x.strip(quotes))
        raise ConfigError(f"--config {spec} {' '.join(overrides)}: {detail}") from None
    except (SyntaxError, ImportError, OSError, NameError) as e:  # the file is not a config
        raise ConfigError(f"--config {path} could not be loaded: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    try:
        cfg = fv.config
    except Exception as e:  # noqa: BLE001 - the file itself fails to load (syntax, imports, ...)
        cause = e.__cause__ or e.__context__ or e
        raise ConfigError(f"--config {path} could not be loaded: {type(cause).__name__}: "
                          f"{str(cause).splitlines()[0] if str(cause) else ''}") from None
    if cfg is None:
        raise ConfigError(f"--config {spec!r} did not produce a config")
    return resolve_paths(validate(cfg))
