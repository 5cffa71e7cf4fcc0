"""OpenELM-3b with Apple's pretraining recipe.

Launch::

    elmjax train --config experiments/openelm_3b.py --workdir runs/openelm_3b \
        --config.data.mixture=data_mixtures/openelm_pretrain.yaml \
        --config.data.tokenizer=/path/to/llama/tokenizer.model

CPU-sized smoke run: ``--config experiments/openelm_3b.py:smoke=True``.
"""

from elmjax.presets import openelm_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, smoke=False)
    return openelm_config("3b", smoke=args.smoke)
