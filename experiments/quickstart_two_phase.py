"""The quickstart model trained in two phases on the embedded sample corpus.

Phase ``web`` (steps 0-239) reads the web-style shards; phase ``refined`` (240-299) reads
curated books plus synthetic worked problems, with stricter length and quality filters and
the learning rate decaying across it. Runs in minutes on 2 CPU cores::

    elmjax train --config experiments/quickstart_two_phase.py --workdir runs/two_phase

The switch shows in ``metrics.jsonl`` (``phase``), TensorBoard and the progress bar.
"""

from elmjax.presets import parse_arg, sibling, two_phase_curriculum

quickstart = sibling(__file__, "quickstart")


def get_config(arg=None):
    args = parse_arg(arg, steps=300, phase2_start=0.8)
    c = quickstart.get_config(f"steps={args.steps}")
    c.model.name = "openelm-quickstart-two-phase"
    return two_phase_curriculum(c, "data_mixtures/quickstart_phase1.yaml",
                                "data_mixtures/quickstart_phase2.yaml",
                                phase2_start=args.phase2_start, decay_in_phase2=True)
