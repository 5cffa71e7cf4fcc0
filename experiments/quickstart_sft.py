"""Instruction-tunes the quickstart model on the shipped sample conversations (all weights).

A few minutes on 2 CPU cores, after the quickstart pretraining run::

    elmjax train --config experiments/quickstart.py --workdir runs/quickstart
    elmjax finetune --config experiments/quickstart_sft.py --init runs/quickstart \
        --workdir runs/quickstart_sft
"""

from elmjax.presets import finetune_config, parse_arg, sibling

quickstart_config = sibling(__file__, "quickstart").get_config

SAMPLES = "data_mixtures/samples/sft/ultrafeedback.jsonl,data_mixtures/samples/sft/messages.jsonl"


def get_config(arg=None):
    args = parse_arg(arg, steps=60)
    c = quickstart_config()
    c.model.name = "openelm-quickstart-sft"
    c = finetune_config(c, SAMPLES, steps=args.steps, batch=8, lr=1e-3, seq_len=128,
                        warmup=5, min_lr_ratio=0.1)
    c.data.pack_rows = 16
    c.log.every = 5
    return c
