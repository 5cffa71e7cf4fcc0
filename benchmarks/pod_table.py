"""Pod table and the before/after of issue 14, from ``elmjax plan`` (needs the ``tpu`` extra).

Each row AOT-compiles the real train step for a TPU topology on this machine (no TPU) and
prints one markdown row; results are appended as JSON lines to ``--out`` so an interrupted
run resumes where it stopped (rows already there are printed, not recompiled).

    python benchmarks/pod_table.py --rows after            # the issue's rows, this code
    python benchmarks/pod_table.py --rows pod --search 6    # presets at 2048 x 2048 on pods
    python benchmarks/pod_table.py --rows pod --only 270m   # a subset (substring of the label)

Compile times on a 2-core machine: the quickstart ~1 min, OpenELM-270M ~3 min, OpenELM-1.1B
~9 min per compile when idle; ``--search K`` compiles up to K configurations per row.
"""

from __future__ import annotations

import argparse
import json
import os

from elmjax import config, plan

PRESETS = {"270m": "openelm_270m", "450m": "openelm_450m", "1.1b": "openelm_1_1b", "3b": "openelm_3b"}


def _mesh(d, f, t):
    return [f"--config.mesh.data={d}", f"--config.mesh.fsdp={f}", f"--config.mesh.tensor={t}"]


def _batch(b, s):
    return [f"--config.train.global_batch_size={b}", f"--config.data.seq_len={s}"]


# The table, rerun with this code (activation sharding; splash attention where the
# length suits it). Label, preset file, topology, overrides.
AFTER = [
    ("quickstart 64x512 (1,8,1) full bf16", "quickstart", "v5p-16",
     _batch(64, 512) + _mesh(1, 8, 1) + ["--config.model.remat=full",
                                         "--config.model.dtype=bfloat16"]),
    ("quickstart 64x512 (8,1,1) full bf16", "quickstart", "v5p-16",
     _batch(64, 512) + _mesh(8, 1, 1) + ["--config.model.remat=full",
                                         "--config.model.dtype=bfloat16"]),
    ("270m 64x2048 (1,4,1) remat none", "openelm_270m", "v5p-8",
     _batch(64, 2048) + _mesh(1, 4, 1) + ["--config.model.remat=none"]),
    ("270m 64x2048 (1,4,1) remat full", "openelm_270m", "v5p-8",
     _batch(64, 2048) + _mesh(1, 4, 1) + ["--config.model.remat=full"]),
    ("1.1b 2048x2048 (1,64,1) full", "openelm_1_1b", "v5p-128",
     _batch(2048, 2048) + _mesh(1, 64, 1) + ["--config.model.remat=full"]),
]
# Attention alone: the same steps with the dense xla path.
AFTER += [(label + " xla", preset, topo, ov + ["--config.model.attention=xla"])
          for label, preset, topo, ov in AFTER if "quickstart" not in label]

POD = ([(f"{size} 2048x2048", f, topo, _batch(2048, 2048) + ["--config.model.remat=full"])
        for topo in ("v5p-128", "v5e-256", "v6e-256") for size, f in PRESETS.items()]
       + [("1.1b 2048x2048", "openelm_1_1b", "v5p-1024",
           _batch(2048, 2048) + ["--config.model.remat=full"])])


def row_text(label, r) -> str:
    gib = 2 ** 30
    mesh = r["mesh"]
    head = (f"| {label} | {r['topology']} ({r['chips']} chips) | ({mesh['data']}, {mesh['fsdp']}, "
            f"{mesh['tensor']}) | {r['config']['model.remat']} | {r['attention']} | "
            f"mb {r['config']['train.microbatches']} | ")
    if not r["fits"]:
        return head + (f"**does not fit: {r['per_device_bytes'] / gib:.1f} GiB > "
                       f"{r['hbm_bytes'] / gib:.1f} GiB** | — | — | {r['compile_s']:.0f} s |")
    if not r["estimated_step_s"]:
        return head + f"{r['per_device_bytes'] / gib:.2f} GiB | no estimate | — | {r['compile_s']:.0f} s |"
    return head + (f"{r['per_device_bytes'] / gib:.2f} GiB | {r['estimated_step_s'] * 1e3:.1f} ms | "
                   f"{100 * r['predicted_mfu']:.1f}% | {r['compile_s']:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", choices=("after", "pod"), default="after")
    ap.add_argument("--only", default="", help="run only rows whose label+topology contain this")
    ap.add_argument("--search", type=int, default=0,
                    help="pod rows: search up to this many configurations per row (0: FSDP as given)")
    ap.add_argument("--no-compile", action="store_true",
                    help="print the rows already in --out; compile nothing")
    ap.add_argument("--out", default=None, help="default: benchmarks/pod_table_<rows>.jsonl")
    args = ap.parse_args()
    args.out = args.out or f"benchmarks/pod_table_{args.rows}.jsonl"
    done = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            for line in f:
                rec = json.loads(line)
                done[(rec["label"], rec["topology"])] = rec
    rows = AFTER if args.rows == "after" else POD
    print("| row | target | mesh (data, fsdp, tensor) | remat | attention | microbatches | "
          "per-chip memory | compiler's step estimate | predicted MFU | compile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, preset, topo, overrides in rows:
        if args.only not in f"{label} {topo}":
            continue
        if (label, topo) in done:
            print(row_text(label, done[(label, topo)]), flush=True)
            continue
        if args.no_compile:
            continue
        cfg = config.load(f"experiments/{preset}.py", overrides)
        target = plan.parse_target(topo)
        if args.search:
            found = plan.search(cfg, target, max_compiles=args.search)
            if not found:
                print(f"| {label} | {topo} | nothing fit in {args.search} compiles |", flush=True)
                continue
            r = found[0]
        else:
            r = plan.plan(cfg, target)
        rec = {"label": label, **r, "topology": topo}
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(row_text(label, rec), flush=True)


if __name__ == "__main__":
    main()
