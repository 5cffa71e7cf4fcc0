"""OpenELM-270M LoRA on the CommonSense-170k mixture with the paper's settings.

Launch (``commonsense_170k.json`` as distributed by LLM-Adapters, a local file)::

    elmjax finetune --config experiments/openelm_270m_lora.py --init /path/to/OpenELM-270M \
        --workdir runs/openelm_270m_lora --config.sft.files=/path/to/commonsense_170k.json \
        --config.data.tokenizer=/path/to/llama/tokenizer.model
    elmjax export --workdir runs/openelm_270m_lora --merge-adapters --out OpenELM-270M-lora

From docs/openelm.md (fine-tuning recipes): LoRA r=32, alpha=32, dropout 0.1 on token
embeddings, qkv_proj, out_proj, proj_1 and proj_2; AdamW at 3e-4, cosine to 3e-5, 1000
warm-up steps, 4375 steps, no weight decay; the Alpaca prompt. Not in the paper and chosen
here: 128 sequences per step, one per row (4375 steps are then ~3.3 epochs of 170k, close to
LLM-Adapters' 3), length 256 (LLM-Adapters' cut-off), the frozen base in bfloat16,
adapters-only checkpoints.
``:dora=True`` gives DoRA (see ``openelm_270m_dora.py``).
"""

from elmjax.presets import finetune_config, openelm_config, parse_arg


def peft_preset(method, smoke=False):
    """The paper's PEFT run for ``method`` (lora or dora)."""
    c = openelm_config("270m", smoke=smoke)
    c.model.name = f"openelm-270m-{method}"
    c = finetune_config(c, "data/commonsense_170k.json", steps=4375, batch=128, lr=3e-4,
                        seq_len=256, warmup=1000, min_lr_ratio=0.1, pack=False)
    c.sft.format = "commonsense"
    c.peft.method = method
    c.peft.rank, c.peft.alpha, c.peft.dropout = 32, 32.0, 0.1
    c.peft.targets = "token_embeddings,qkv_proj,out_proj,proj_1,proj_2"
    c.peft.base_dtype = "bfloat16"
    c.checkpoint.adapters_only = True
    c.checkpoint.every = 500
    if smoke:
        c.sft.files = "data_mixtures/samples/sft/commonsense.json"
        c.data.seq_len, c.train.steps, c.train.global_batch_size = 128, 4, 2
        c.optim.warmup_steps, c.optim.decay_steps, c.checkpoint.every = 1, 4, 2
    return c


def get_config(arg=None):
    args = parse_arg(arg, smoke=False, dora=False)
    return peft_preset("dora" if args.dora else "lora", smoke=args.smoke)
