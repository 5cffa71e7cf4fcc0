"""Wall time of a sweep run one at a time vs side by side, same devices per run, and
whether every run's losses are identical both ways; then the side-by-side sweep's report.

    python benchmarks/sweep_parallel.py experiments/sweeps/scaling_ladder.py \
        --workdir runs/ladder_bench --parallel 2 --report docs/scaling/cpu_ladder

Runs ``elmjax sweep run`` twice (``--parallel 1`` into WORKDIR/one_at_a_time, then
``--parallel P`` into WORKDIR/side_by_side, ``--devices-per-run`` the same), prints both wall
times and their ratio, compares the logged losses run by run, and writes
``elmjax sweep report`` of the side-by-side sweep to ``--report``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from elmjax.metrics import read_metrics
from elmjax.train import sweep


def run(spec, workdir, parallel, per_run):
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "elmjax.cli", "sweep", "run", spec, "--workdir",
                          workdir, "--parallel", str(parallel), "--devices-per-run", str(per_run)])
    if rc:
        sys.exit(f"sweep run --parallel {parallel} exited {rc}")
    return time.perf_counter() - t0


def losses(workdir, name):
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, name)) if "loss" in r}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sweep")
    p.add_argument("--workdir", required=True)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--devices-per-run", type=int, default=1)
    p.add_argument("--report", required=True, help="report directory for the side-by-side sweep")
    args = p.parse_args()
    one = os.path.join(args.workdir, "one_at_a_time")
    side = os.path.join(args.workdir, "side_by_side")
    t_one = run(args.sweep, one, 1, args.devices_per_run)
    t_side = run(args.sweep, side, args.parallel, args.devices_per_run)
    names = [n for n, _ in sweep.sweep_runs(args.sweep)]
    same = {n: losses(one, n) == losses(side, n) for n in names}
    result = {"sweep": args.sweep, "runs": len(names), "devices_per_run": args.devices_per_run,
              "parallel": args.parallel, "one_at_a_time_s": round(t_one, 1),
              "side_by_side_s": round(t_side, 1), "speedup": round(t_one / t_side, 3),
              "identical_losses": same}
    print(json.dumps(result, indent=1))
    subprocess.check_call([sys.executable, "-m", "elmjax.cli", "sweep", "report", args.sweep,
                           "--workdir", side, "--out", args.report])
    with open(os.path.join(args.report, "wall_time.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
