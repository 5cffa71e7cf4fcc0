"""LoRA on the quickstart model with the shipped sample conversations (adapters only).

A few minutes on 2 CPU cores, after the quickstart pretraining run::

    elmjax train --config experiments/quickstart.py --workdir runs/quickstart
    elmjax finetune --config experiments/quickstart_lora.py --init runs/quickstart \
        --workdir runs/quickstart_lora
    elmjax export --workdir runs/quickstart_lora --merge-adapters --out runs/quickstart_lora_hf

``:dora=True`` trains DoRA instead.
"""

from elmjax.presets import parse_arg, sibling

sft_config = sibling(__file__, "quickstart_sft").get_config


def get_config(arg=None):
    args = parse_arg(arg, steps=60, dora=False)
    c = sft_config(f"steps={args.steps}")
    c.model.name = "openelm-quickstart-lora"
    c.peft.method = "dora" if args.dora else "lora"
    c.peft.rank, c.peft.alpha, c.peft.dropout = 8, 16.0, 0.05
    c.peft.targets = "token_embeddings,qkv_proj,out_proj,proj_1,proj_2"
    c.checkpoint.adapters_only = True
    c.optim.peak_lr = 3e-3
    return c
