"""OpenELM-270M pretrained in two phases: filtered web text, then a refined subset plus
synthetic data, with the learning-rate decay placed in phase 2 (warmup-stable-decay).

Launch::

    elmjax train --config experiments/openelm_270m_two_phase.py --workdir runs/270m_two_phase \\
        --config.data.tokenizer=/path/to/llama/tokenizer.model

Point the paths in data_mixtures/openelm_phase{1,2}.yaml at your copies first.
CPU-sized smoke run: ``--config experiments/openelm_270m_two_phase.py:smoke=True``.
"""

from elmjax.presets import openelm_config, parse_arg, two_phase_curriculum


def get_config(arg=None):
    args = parse_arg(arg, smoke=False, phase2_start=0.8)
    c = openelm_config("270m", smoke=args.smoke)
    return two_phase_curriculum(c, "data_mixtures/openelm_phase1.yaml",
                                "data_mixtures/openelm_phase2.yaml",
                                phase2_start=args.phase2_start, decay_in_phase2=True)
