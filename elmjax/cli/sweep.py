"""``elmjax sweep list|run``: the runs of a sweep file."""

from __future__ import annotations

import os
import sys

from elmjax.cli.common import EXIT_FAILED


def cmd_sweep(args, overrides):
    """Lists a sweep's runs, or runs them one after another in ``--workdir/NAME``."""
    from elmjax.data.curriculum import curriculum_phases
    from elmjax.train import sweep

    runs = sweep.resolve(args.sweep, overrides)
    if args.sweep_command == "list":
        for name, run_overrides, cfg in runs:
            phases = curriculum_phases(cfg)
            spans = ", ".join(f"{p.name}[{p.start},{p.end})" for p in phases)
            print(f"{name}: {' '.join(run_overrides)}\n    {cfg.train.steps} steps; phases "
                  f"{spans}; mixtures {', '.join(p.mixture for p in phases)}")
        return 0
    from elmjax.eval.harness import training_evaluator
    from elmjax.train import loop

    failed = []
    for i, (name, _, cfg) in enumerate(runs):
        workdir = os.path.join(args.workdir, name)
        print(f"== sweep run {i + 1}/{len(runs)}: {name} -> {workdir}", flush=True)
        try:
            loop.train(cfg, workdir, evaluator=training_evaluator(cfg))
        except loop.TrainingError as e:
            print(f"run {name} failed: {e}", file=sys.stderr)
            failed.append(name)
    print(f"sweep done: {len(runs) - len(failed)} completed, {len(failed)} failed {failed or ''}")
    return EXIT_FAILED if failed else 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="list or run the runs of a sweep file")
    sweep_sub = p.add_subparsers(dest="sweep_command", metavar="SWEEP_COMMAND", required=True)
    p = sweep_sub.add_parser("list", help="print each run's overrides, phases and mixtures")
    p.add_argument("sweep", help="experiments/sweeps/NAME.py")
    p.set_defaults(func=cmd_sweep)
    p = sweep_sub.add_parser("run", help="run every run one after another on this host "
                             "(a finished run is skipped, an interrupted one resumes)")
    p.add_argument("sweep", help="experiments/sweeps/NAME.py")
    p.add_argument("--workdir", required=True, help="parent directory: one run directory per run")
    p.set_defaults(func=cmd_sweep)
