"""Preference-tunes the quickstart model (DPO) on the shipped hand-written pairs, all weights.

A few minutes on 2 CPU cores, after the quickstart pretraining run::

    elmjax train --config experiments/quickstart.py --workdir runs/quickstart
    elmjax finetune --config experiments/quickstart_dpo.py --init runs/quickstart \
        --workdir runs/quickstart_dpo

The 40 pairs of ``data_mixtures/samples/prefs/train.jsonl`` prefer a helpful answer to a
shrug or a refusal; ``heldout.jsonl`` has 12 more in the same styles, scored every 10 steps
(``heldout_reward_accuracy``, ``heldout_reward_margin``, ``heldout_loss`` in the metrics). ``:loss=hinge`` or ``:loss=ipo`` switch the objective,
``:reference=precomputed`` scores the reference once instead of every step.
"""

from elmjax.presets import parse_arg, preference_config, sibling

quickstart_config = sibling(__file__, "quickstart").get_config

SAMPLES = "data_mixtures/samples/prefs/train.jsonl"


def get_config(arg=None):
    args = parse_arg(arg, steps=40, loss="sigmoid", beta=0.1, reference="model")
    c = quickstart_config()
    c.model.name = "openelm-quickstart-dpo"
    c = preference_config(c, SAMPLES, steps=args.steps, pairs=8, lr=1e-4, seq_len=64, warmup=4,
                          min_lr_ratio=0.1, loss=args.loss, beta=args.beta, max_prompt_length=40)
    c.prefs.reference = args.reference
    c.prefs.eval_files = "data_mixtures/samples/prefs/heldout.jsonl"
    c.eval.every = 10
    c.log.every = 5
    return c
