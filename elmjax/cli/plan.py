"""``elmjax plan``: compile the train step for a TPU topology and report memory, FLOPs and
the compiler's step-time estimate (or ``--search`` for configurations that fit)."""

from __future__ import annotations

import json

from elmjax.cli.common import EXIT_USAGE, add_config_arg, config_from, fail

EXIT_DOES_NOT_FIT = 1


def cmd_plan(args, overrides):
    """Prints the plan (``--json``: one object); exit status 1 when the step does not fit."""
    from elmjax import plan

    cfg = config_from(args, overrides)
    try:
        target = plan.parse_target(args.topology, args.num_slices)
        if args.search:
            return _search(plan, cfg, target, args)
        report = plan.plan(cfg, target)
    except plan.PlanError as e:
        return fail("plan", e, EXIT_USAGE)
    print(json.dumps(report) if args.json else plan.format_report(report))
    return 0 if report["fits"] else EXIT_DOES_NOT_FIT


def _search(plan, cfg, target, args):
    log = (lambda *_: None) if args.json else print
    log(f"searching up to {args.max_compiles} configurations on {target.name} "
        f"({target.topology}, {target.chips} chips):")
    found = plan.search(cfg, target, args.max_compiles, log=log)
    if args.json:
        print(json.dumps(found))
    elif not found:
        print("nothing fits among the configurations tried; raise --max-compiles, shrink the "
              "batch or use a larger slice")
    else:
        print("fits, fastest first by the compiler's estimate (pass to `elmjax train`):")
        for r in found:
            print(f"  {plan.estimate_text(r):>24}  {r['per_device_bytes'] / 2**30:6.1f} GiB  "
                  + " ".join(f"--config.{k}={v}" for k, v in r["overrides"].items()))
    return 0 if found else EXIT_DOES_NOT_FIT


def register(sub) -> None:
    p = sub.add_parser("plan", help="compile the train step for a TPU topology (needs the tpu "
                                    "extra): per-chip memory, FLOPs, estimated step time")
    add_config_arg(p)
    p.add_argument("--topology", required=True,
                   help="Cloud TPU name: v5p-N / v4-N (N TensorCores), v5e-N / v5litepod-N / "
                        "v6e-N (N chips), e.g. v5p-128")
    p.add_argument("--num-slices", type=int, default=1, help="multislice: this many slices")
    p.add_argument("--search", action="store_true",
                   help="try mesh shapes, remat, microbatches and attention; list what fits")
    p.add_argument("--max-compiles", type=int, default=12, help="--search: compile at most this many")
    p.add_argument("--json", action="store_true", help="print one JSON object (a list with --search)")
    p.set_defaults(func=cmd_plan)
