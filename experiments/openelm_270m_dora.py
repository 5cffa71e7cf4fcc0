"""OpenELM-270M DoRA on the CommonSense-170k mixture: the LoRA preset with weight decomposition.

Launch::

    elmjax finetune --config experiments/openelm_270m_dora.py --init /path/to/OpenELM-270M \
        --workdir runs/openelm_270m_dora --config.sft.files=/path/to/commonsense_170k.json \
        --config.data.tokenizer=/path/to/llama/tokenizer.model

Settings as in ``openelm_270m_lora.py`` (docs/openelm.md: the same rank, alpha, dropout,
targets and schedule, with DoRA's magnitude/direction decomposition).
"""

from elmjax.presets import parse_arg, sibling

peft_preset = sibling(__file__, "openelm_270m_lora").peft_preset


def get_config(arg=None):
    args = parse_arg(arg, smoke=False)
    return peft_preset("dora", smoke=args.smoke)
