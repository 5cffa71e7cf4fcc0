"""``elmjax sweep list|run|launch|report``: the runs of a sweep file.

``run`` runs them on this host, several at once on shares of the local devices
(``elmjax.train.sweep_runner``); ``launch`` prints the command of every run and writes a
SLURM job-array script for a cluster; ``report`` gathers the results into tables, fits
and plots (``elmjax.train.sweep_report``). ``--config.*`` overrides apply to every run.
"""

from __future__ import annotations

import os

from elmjax.cli.common import EXIT_FAILED, EXIT_PREEMPTED, fail


def cmd_list(args, overrides):
    """Prints each run's overrides, size, budget, phases and mixtures."""
    from elmjax.data.curriculum import curriculum_phases
    from elmjax.model.schedule import flops_per_token, param_count
    from elmjax.train import sweep

    for name, run_overrides, cfg in sweep.resolve(args.sweep, overrides):
        phases = curriculum_phases(cfg)
        spans = ", ".join(f"{p.name}[{p.start},{p.end})" for p in phases)
        tokens = cfg.train.steps * cfg.train.global_batch_size * cfg.data.seq_len
        flops = tokens * flops_per_token(cfg.model, cfg.data.seq_len)
        print(f"{name}: {' '.join(run_overrides)}\n    {param_count(cfg.model):,} parameters; "
              f"{cfg.train.steps} steps, {tokens:,} tokens, {flops:.3g} FLOPs; phases {spans}; "
              f"mixtures {', '.join(p.mixture for p in phases)}")
    return 0


def cmd_run(args, overrides):
    """Runs every unfinished run, ``--parallel`` at a time; exit 0 when all completed."""
    from elmjax.train import sweep_runner

    try:
        states = sweep_runner.run_sweep(args.sweep, args.workdir, parallel=args.parallel,
                                        devices_per_run=args.devices_per_run,
                                        extra_overrides=overrides,
                                        log=lambda m: print(m, flush=True))
    except (ValueError, RuntimeError) as e:
        return fail("sweep run", e)
    counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
          f"; report: elmjax sweep report {args.sweep} --workdir {args.workdir}")
    if "failed" in states.values():
        return EXIT_FAILED
    return 0 if set(states.values()) == {"completed"} else EXIT_PREEMPTED


def cmd_launch(args, overrides):
    """Prints one ``elmjax train`` command per run and/or writes a SLURM job-array script."""
    from elmjax.train import sweep

    sweep.resolve(args.sweep, overrides)  # every run's config checked before anything is written
    commands = sweep.launch_commands(args.sweep, args.workdir, overrides)
    if args.array_script:
        name = os.path.splitext(os.path.basename(sweep.split_spec(args.sweep)[0]))[0]
        script = sweep.slurm_array_script(commands, job_name=f"elmjax-{name}",
                                          log_dir=os.path.join(args.workdir, "slurm_logs"),
                                          sbatch_options=args.sbatch)
        with open(args.array_script, "w") as f:
            f.write(script)
        print(f"# wrote {args.array_script}: sbatch {args.array_script} "
              f"({len(commands)} array tasks)")
    if args.print or not args.array_script:
        print("\n".join(commands))
    return 0


def cmd_report(args, overrides):
    """Writes the sweep's table (Markdown, CSV, JSON), fits and plots; prints the table."""
    from elmjax.train import sweep_report

    out = sweep_report.write_report(args.sweep, args.workdir, args.out, overrides,
                                    bootstrap=args.bootstrap, min_steps=args.min_steps)
    with open(out["files"]["md"]) as f:
        print(f.read().split("\n![", 1)[0].rstrip())
    print(f"\nwrote {out['dir']}: " + ", ".join(os.path.basename(p) for p in out["files"].values()))
    return 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="list, run, launch or report the runs of a sweep file")
    sweep_sub = p.add_subparsers(dest="sweep_command", metavar="SWEEP_COMMAND", required=True)
    spec_help = "experiments/sweeps/NAME.py[:ARG]"

    p = sweep_sub.add_parser("list", help="print each run's overrides, size, budget and phases")
    p.add_argument("sweep", help=spec_help)
    p.set_defaults(func=cmd_list)

    p = sweep_sub.add_parser("run", help="run the runs on this host, several at once on shares "
                             "of the devices (finished runs are skipped, stopped ones resume)")
    p.add_argument("sweep", help=spec_help)
    p.add_argument("--workdir", required=True, help="parent directory: one run directory per run")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--devices-per-run", type=int, default=None,
                   help="local devices each run gets (default: all devices / --parallel); keep "
                        "it fixed to get the same results one at a time or side by side")
    p.set_defaults(func=cmd_run)

    p = sweep_sub.add_parser("launch", help="print one `elmjax train` command per run and/or "
                             "write a SLURM job-array script")
    p.add_argument("sweep", help=spec_help)
    p.add_argument("--workdir", required=True, help="parent directory: one run directory per run")
    p.add_argument("--print", action="store_true", help="print the commands (the default "
                                                        "without --array-script)")
    p.add_argument("--array-script", help="write a SLURM job-array script here")
    p.add_argument("--sbatch", action="append", default=[],
                   help="extra #SBATCH option for the script, e.g. --sbatch=--gres=gpu:1 "
                        "(repeatable)")
    p.set_defaults(func=cmd_launch)

    p = sweep_sub.add_parser("report", help="table (Markdown, CSV, JSON), scaling-law fits "
                             "and plots of a sweep's runs")
    p.add_argument("sweep", help=spec_help)
    p.add_argument("--workdir", required=True, help="the sweep's parent directory")
    p.add_argument("--out", help="report directory (default WORKDIR/report)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per fit")
    p.add_argument("--min-steps", type=int, default=100,
                   help="runs shorter than this are flagged as too short to trust")
    p.set_defaults(func=cmd_report)
