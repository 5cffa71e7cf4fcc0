"""A tiny end-to-end run config over the embedded sample corpus and the shipped tokenizer."""

import pathlib

from elmjax.presets import base_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_run_config(steps=6, every=3):
    """~0.3M-parameter OpenELM (vocab of the shipped 4096-piece tokenizer), 4 x 32 tokens per step."""
    cfg = base_config()
    m = cfg.model
    m.name = "openelm-test"
    m.num_layers, m.model_dim, m.head_dim, m.num_gqa_groups = 2, 32, 16, 1
    m.ffn_dim_divisor, m.vocab_size, m.max_context_length = 16, 4096, 64
    cfg.data.mixture = str(ROOT / "data_mixtures" / "quickstart.yaml")
    cfg.data.tokenizer = str(ROOT / "data_mixtures" / "samples" / "tokenizer.model")
    cfg.data.seq_len = 32
    cfg.train.steps = steps
    cfg.train.global_batch_size = 8
    cfg.optim.peak_lr = 1e-2
    cfg.optim.warmup_steps = 2
    cfg.optim.decay_steps = steps
    cfg.checkpoint.every = every
    cfg.log.every = 1
    return cfg


def overrides_of(cfg, keys):
    """``--config.a.b=v`` command-line overrides reproducing ``cfg``'s values at ``keys``."""
    out = []
    for key in keys:
        section, name = key.split(".")
        out.append(f"--config.{key}={cfg[section][name]}")
    return out
