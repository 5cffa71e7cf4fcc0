"""A CPU-sized scaling ladder: OpenELM-shaped models (layer-wise scaling on) of 5 sizes,
each trained on the same number of tokens per parameter, on the quickstart mixture::

    elmjax sweep list experiments/sweeps/scaling_ladder.py
    elmjax sweep run experiments/sweeps/scaling_ladder.py --workdir runs/ladder --parallel 2
    elmjax sweep report experiments/sweeps/scaling_ladder.py --workdir runs/ladder

Shapes come from ``elmjax.train.ladder`` (width on a grid, depth ``width / aspect``; small
models use a lower aspect than Apple's ~80, like the quickstart's 256 / 6). The argument
string changes the ladder: ``scaling_ladder.py:sizes=3,tokens_per_param=2`` (a shorter
one), ``alpha=0.25`` (the lower end of the qkv multipliers), ``beta=2.0`` (the upper end of
the FFN multipliers). Budget: ``tokens_per_param`` tokens for every parameter (embedding
included), so compute grows as N²; the whole ladder takes about 20 minutes on 2 CPU cores.
"""

import os

from elmjax.presets import config_module, parse_arg
from elmjax.train import ladder

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "quickstart.py")

DEFAULTS = dict(sizes=5, tokens_per_param=1.0, aspect=32.0, alpha=0.5, beta=4.0)
# Widths of the rungs; with the default aspect 32 and vocabulary 4096 they have
# 0.34M, 0.66M, 1.1M, 1.9M, 2.8M and 4.0M parameters (embedding included).
WIDTHS = (64, 96, 128, 160, 192, 224)


def _args(arg):
    return parse_arg(arg, **DEFAULTS)


def get_config(arg=None):
    args = _args(arg)
    c = config_module(BASE).get_config()
    c.model.name = "openelm-ladder"
    c.model.qkv_multipliers = (args.alpha, 1.0)
    c.model.ffn_multipliers = (0.5, args.beta)
    c.model.ffn_dim_divisor = 32
    c.checkpoint.every = 100
    c.log.every = 5
    return c


def get_sweep(arg=None):
    args = _args(arg)
    c = get_config(arg)
    shapes = [ladder.rule_shape(d, args.aspect) for d in WIDTHS[:args.sizes]]
    rungs = ladder.ladder(c.model, c.data.seq_len, shapes=shapes)
    tokens_per_step = c.data.seq_len * c.train.global_batch_size
    runs = ladder.by_tokens_per_param(rungs, args.tokens_per_param, tokens_per_step, min_steps=20)
    return ladder.sweep_entries(runs, warmup_fraction=0.1)
