"""OpenELM-270m with Apple's pretraining recipe.

Launch::

    elmjax train --config experiments/openelm_270m.py --workdir runs/openelm_270m \
        --config.data.mixture=data_mixtures/openelm_pretrain.yaml \
        --config.data.tokenizer=/path/to/llama/tokenizer.model

CPU-sized smoke run: ``--config experiments/openelm_270m.py:smoke=True``.
"""

from elmjax.presets import openelm_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, smoke=False)
    return openelm_config("270m", smoke=args.smoke)
