"""OpenELM-270M instruction tuning on UltraFeedback (binarized, cleaned) with the paper's settings.

Launch (the data and weights are local files; nothing is downloaded)::

    elmjax finetune --config experiments/openelm_270m_sft.py --init /path/to/OpenELM-270M \
        --workdir runs/openelm_270m_sft \
        --config.sft.files=/path/to/ultrafeedback_binarized/train_prefs-*.parquet \
        --config.data.tokenizer=/path/to/llama/tokenizer.model

From docs/openelm.md (fine-tuning recipes): 5 epochs at learning rate 2e-5 for 270M,
maximum length 1024, the Zephyr-style template. Apple trained with preference losses (DPO /
hinge) on the chosen/rejected pairs; this config does supervised tuning on the chosen
responses. Not in the paper and chosen here: 64 conversations per step, one per row
(``sft.pack=False``, so ``steps`` = 5 epochs of the 61,135 prompts of ``train_prefs``),
10% linear warm-up and cosine decay to zero (as in the alignment-handbook recipes).

CPU-sized smoke run: ``--config experiments/openelm_270m_sft.py:smoke=True``.
"""

from elmjax.presets import finetune_config, openelm_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, smoke=False, records=61135, epochs=5, batch=64)
    c = openelm_config("270m", smoke=args.smoke)
    c.model.name = "openelm-270m-sft"
    steps = -(-args.records * args.epochs // args.batch)
    c = finetune_config(c, "data/ultrafeedback_binarized/train_prefs-*.parquet", steps=steps,
                        batch=args.batch, lr=2e-5, seq_len=1024, warmup=steps // 10,
                        min_lr_ratio=0.0, pack=False)
    if args.smoke:
        c.sft.files = "data_mixtures/samples/sft/ultrafeedback.jsonl"
        c.data.seq_len, c.train.steps, c.train.global_batch_size = 128, 4, 2
        c.optim.warmup_steps, c.optim.decay_steps, c.checkpoint.every = 1, 4, 2
    return c
