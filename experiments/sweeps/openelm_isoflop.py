"""An IsoFLOP grid of OpenELM-shaped models for a pod: at each of several compute budgets,
models from ~20M to ~1.5B parameters (Apple's layer-wise scaling: qkv 0.5→1.0, FFN
0.5→4.0, 4 query heads per kv head, FFN divisor 256, vocabulary 32000), each trained for
``tokens = budget / FLOPs per token``. The loss-optimal size per budget gives ``N*(C)``::

    elmjax sweep list experiments/sweeps/openelm_isoflop.py
    elmjax sweep launch experiments/sweeps/openelm_isoflop.py --workdir /shared/isoflop \\
        --array-script isoflop.sbatch --sbatch=--gres=gpu:8 \\
        --config.data.mixture=data_mixtures/openelm_pretrain.yaml \\
        --config.data.tokenizer=/path/to/llama/tokenizer.model
    elmjax sweep run experiments/sweeps/openelm_isoflop.py --workdir runs/isoflop \\
        --parallel 2 --devices-per-run 4 ...      # one 8-accelerator host, same overrides
    elmjax sweep report experiments/sweeps/openelm_isoflop.py --workdir runs/isoflop

Arguments (``openelm_isoflop.py:budgets=4,max_flops=3e19``): ``min_flops``/``max_flops``
(the smallest and largest budget, log-spaced), ``budgets`` (how many), ``batch`` (sequences
of 2048 tokens per step), ``min_steps`` (a size whose run would be shorter is left out of
that budget), ``min_tokens_per_param``/``max_tokens_per_param`` (each budget keeps the
sizes trained on 2 to 200 tokens per parameter, around Chinchilla's ~20), ``alpha``/``beta``
(the low end of the qkv and the high end of the FFN multipliers). Peak learning rate per size follows Apple's four presets (5.3e-3 at 270M to
1.2e-3 at 3B: ``5.3e-3 * (N / 271.5M)^-0.62``, at most 1e-2).
"""

import os

from elmjax.presets import config_module, parse_arg
from elmjax.train import ladder

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "openelm_270m.py")
DEFAULTS = dict(min_flops=1e18, max_flops=1e20, budgets=5, batch=512, min_steps=500,
                min_tokens_per_param=2.0, max_tokens_per_param=200.0, alpha=0.5, beta=4.0)
TARGETS = (20e6, 40e6, 80e6, 150e6, 271.5e6, 457e6, 750e6, 1.08e9, 1.5e9)


def _args(arg):
    return parse_arg(arg, **DEFAULTS)


def get_config(arg=None):
    args = _args(arg)
    c = config_module(BASE).get_config()
    c.model.name = "openelm-isoflop"
    c.model.qkv_multipliers = (args.alpha, 1.0)
    c.model.ffn_multipliers = (0.5, args.beta)
    c.model.remat = "full"
    c.train.global_batch_size = args.batch
    c.checkpoint.every = 1000
    c.log.every = 50
    return c


def peak_lr(rung):
    """Apple's presets' peak learning rates, as a power of the parameter count."""
    return min(1e-2, 5.3e-3 * (rung.params / 271.5e6) ** -0.62)


def get_sweep(arg=None):
    args = _args(arg)
    c = get_config(arg)
    rungs = ladder.ladder(c.model, c.data.seq_len, targets=TARGETS)
    n = max(args.budgets, 1)
    ratio = (args.max_flops / args.min_flops) ** (1 / max(n - 1, 1))
    budgets = [args.min_flops * ratio ** i for i in range(n)]
    runs = ladder.isoflop_grid(
        rungs, budgets, c.data.seq_len * args.batch, min_steps=args.min_steps,
        tokens_per_param=(args.min_tokens_per_param, args.max_tokens_per_param))
    return ladder.sweep_entries(runs, warmup_fraction=0.05, max_warmup=5000, lr_for=peak_lr)
