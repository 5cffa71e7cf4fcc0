"""OpenELM-270M preference tuning (DPO) on UltraFeedback binarized (cleaned), as OpenELM-Instruct.

Launch (the data and weights are local files; nothing is downloaded)::

    elmjax finetune --config experiments/openelm_270m_dpo.py --init /path/to/OpenELM-270M \
        --workdir runs/openelm_270m_dpo \
        --config.prefs.files=/path/to/ultrafeedback_binarized/train_prefs-*.parquet \
        --config.data.tokenizer=/path/to/llama/tokenizer.model

Figures and where they come from:

- OpenELM paper (arXiv 2404.14619, instruction tuning; REFERENCE.md): UltraFeedback
  binarized-cleaned (61,135 prompts in ``train_prefs``), the Zephyr-style template
  ``<|user|>\\n...</s><|assistant|>\\n...</s>``, the Alignment Handbook, DPO or rejection
  sampling (RSO's hinge loss: ``:loss=hinge``); for 270M **5 epochs at learning rate 2e-5**,
  maximum length 1024. Which loss Apple kept for 270M is not stated there; DPO is the default.
- Alignment Handbook, ``recipes/zephyr-7b-beta/dpo/config_full.yaml`` (for what the paper
  leaves open): **beta 0.01**, cosine schedule with **10% warm-up**, ``max_length`` 1024,
  ``max_prompt_length`` 512, AdamW without weight decay, **128 pairs per step**
  (8 per device x 8 GPUs x 2 accumulation steps). Its learning rate, 5e-7 for a 7B model, is
  ``:lr=5e-7`` here; 2e-5 is Apple's figure for 270M.
- Chosen here: cosine decay to zero; the reference is a frozen copy scored in the same step
  (``:reference=precomputed`` scores it once before training and stores it in the workdir).

``data.seq_len`` 1024 (rows are cut at 1025 tokens: 1024 inputs and targets, as in
openelm_270m_sft.py). ``steps`` = 5 epochs x 61,135 pairs / 128 = 2,389; ``train.global_batch_size`` = 256 rows
(two per pair). CPU-sized smoke run: ``--config experiments/openelm_270m_dpo.py:smoke=True``.
"""

from elmjax.presets import openelm_config, parse_arg, preference_config


def get_config(arg=None):
    args = parse_arg(arg, smoke=False, records=61135, epochs=5, pairs=128, lr=2e-5, beta=0.01,
                     loss="sigmoid", reference="model")
    c = openelm_config("270m", smoke=args.smoke)
    c.model.name = "openelm-270m-dpo"
    steps = -(-args.records * args.epochs // args.pairs)
    c = preference_config(c, "data/ultrafeedback_binarized/train_prefs-*.parquet", steps=steps,
                          pairs=args.pairs, lr=args.lr, seq_len=1024, warmup=steps // 10,
                          min_lr_ratio=0.0, loss=args.loss, beta=args.beta, max_prompt_length=512)
    c.prefs.reference = args.reference
    if args.smoke:
        c.prefs.files = "data_mixtures/samples/sft/ultrafeedback.jsonl"
        c.data.seq_len, c.prefs.max_prompt_length, c.train.steps = 128, 64, 4
        c.train.global_batch_size = 4
        c.optim.warmup_steps, c.optim.decay_steps, c.checkpoint.every = 1, 4, 2
    return c
