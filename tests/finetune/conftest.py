"""Tiny fine-tuning configs shared by the fine-tuning tests."""

import pathlib

from elmjax.config import peft_config
from elmjax.presets import base_config
from tests.conftest import tiny_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALL_TARGETS = "token_embeddings,qkv_proj,out_proj,proj_1,proj_2"


def peft_run_config(method="lora", rank=4, targets=ALL_TARGETS, dropout=0.0, **model):
    """A 2-layer model (per-layer widths differ) with a ``peft`` section, 4 x 16 tokens per step."""
    cfg = base_config()
    cfg.model = tiny_model(num_layers=2, **model).model
    cfg.peft = peft_config(method=method, rank=rank, alpha=2.0 * rank, dropout=dropout, targets=targets)
    cfg.data.seq_len = 16
    cfg.train.global_batch_size = 4
    cfg.train.steps = 10
    cfg.optim.peak_lr = 1e-2
    cfg.optim.warmup_steps = 0
    cfg.optim.decay_steps = 10
    cfg.optim.weight_decay = 0.0
    cfg.mesh.fsdp = 1
    return cfg
