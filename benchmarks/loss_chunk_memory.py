"""Per-device memory of the train step with and without ``train.loss_chunk``, side by side.

Compiles (never runs) the real step (``jit_train_step``) for an FSDP mesh of virtual CPU
devices and prints XLA's per-device temporaries: whole-row float32 logits vs chunks.

    python benchmarks/loss_chunk_memory.py --config experiments/quickstart.py --devices 8 \\
        --batch 64 --seq 512 --chunks 0,128
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/quickstart.py")
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--chunks", default="0,128")
    args, overrides = ap.parse_known_args()  # the rest: --config.x=y overrides
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={args.devices}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from elmjax import config, parallel
    from elmjax.plan import abstract_batch
    from elmjax.train import optimizer as opt_lib
    from elmjax.train import state as state_lib
    from elmjax.train.step import jit_train_step

    gib = 2 ** 30
    print(f"{args.config} batch {args.batch} x {args.seq}, FSDP over {args.devices} CPU devices")
    base = None
    for chunk in (int(c) for c in args.chunks.split(",")):
        cfg = config.load(args.config, [f"--config.train.global_batch_size={args.batch}",
                                        f"--config.data.seq_len={args.seq}",
                                        "--config.mesh.data=1", "--config.mesh.fsdp=-1",
                                        f"--config.train.loss_chunk={chunk}", *overrides])
        mesh = parallel.make_mesh(cfg)
        tx = opt_lib.make_optimizer(cfg)
        abstract = state_lib.abstract_state(cfg, tx)
        sh = state_lib.state_shardings(cfg, mesh, tx, abstract)
        state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                             abstract, sh)
        bsh = parallel.batch_sharding(mesh, cfg)
        mem = jit_train_step(cfg, tx, sh, bsh).lower(state, abstract_batch(cfg, bsh)).compile(
        ).memory_analysis()
        base = base or mem.temp_size_in_bytes
        logits = args.batch // args.devices * (chunk or args.seq) * cfg.model.vocab_size * 4
        print(f"loss_chunk={chunk:5d}: temporaries {mem.temp_size_in_bytes / gib:.3f} GiB per device "
              f"({mem.temp_size_in_bytes / base:.2f}x); one float32 logits block "
              f"{logits / gib:.3f} GiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
