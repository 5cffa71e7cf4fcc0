"""A small OpenELM (layer-wise scaling on, ~4M parameters) trained on the embedded sample corpus.

Finishes in a few minutes on 2 CPU cores::

    elmjax train --config experiments/quickstart.py --workdir runs/quickstart
"""

from elmjax.presets import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, steps=300)
    c = base_config()
    c.model.name = "openelm-quickstart"
    c.model.num_layers = 6
    c.model.model_dim = 256
    c.model.head_dim = 32
    c.model.num_gqa_groups = 2
    c.model.qkv_multipliers = (0.5, 1.0)
    c.model.ffn_multipliers = (0.5, 4.0)
    c.model.ffn_dim_divisor = 64
    c.model.vocab_size = 4096  # the shipped sample tokenizer's vocabulary
    c.model.max_context_length = 256
    c.model.rope_max_length = 4096

    c.data.mixture = "data_mixtures/quickstart.yaml"
    c.data.tokenizer = "data_mixtures/samples/tokenizer.model"
    c.data.seq_len = 128

    c.train.steps = args.steps
    c.train.global_batch_size = 16

    c.optim.peak_lr = 3e-3
    c.optim.warmup_steps = 30
    c.optim.decay_steps = args.steps

    c.checkpoint.every = 100
    c.log.every = 10
    return c
