"""Checkpoint throughput for the OpenELM-270M train state, against the disk itself.

Measured side by side in one run, on the same directory:

- a plain sequential write (``numpy.tofile`` + fsync) and read of as many bytes as the
  state holds (params + AdamW moments, float32) — what the disk can do;
- elmjax's Orbax checkpoint: a full save (until committed) and a restore onto the mesh;
- the training stall of an asynchronous save: the time ``Checkpointer.save`` blocks the
  loop, as a fraction of one 270M train step at the given batch.

    python benchmarks/checkpoint_throughput.py --dir /tmp/ckpt_bench --batch 1 --seq 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import jax
import numpy as np

from elmjax import checkpoint, parallel
from elmjax.perf import median_time
from elmjax.presets import config_module
from elmjax.train import optimizer, state
from elmjax.train.synthetic import compiled_train_step

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")


def plain_write_read(path: str, nbytes: int) -> tuple[float, float]:
    """Seconds to write (fsynced) and read back ``nbytes`` sequentially."""
    buf = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    t = time.perf_counter()
    with open(path, "wb") as f:
        buf.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    back = np.fromfile(path, dtype=np.uint8)
    read_s = time.perf_counter() - t
    assert back.size == nbytes
    os.remove(path)
    return write_s, read_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/elmjax_ckpt_bench")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    cfg = config_module(os.path.join(EXPERIMENTS, "openelm_270m.py")).get_config()
    cfg.model.dtype = "float32"
    cfg.data.seq_len, cfg.train.global_batch_size = args.seq, args.batch
    cfg.data.tokenizer = ""  # no tokenizer identity needed here
    cfg.checkpoint.keep = 2
    compiled, st, batch, _ = compiled_train_step(cfg)
    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    shardings = state.state_shardings(cfg, mesh, tx)
    jax.block_until_ready(st)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(st))
    print(f"machine: {jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}; "
          f"270M train state {nbytes / 2 ** 30:.2f} GiB; directory {args.dir}", flush=True)

    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    plain_w, plain_r, save_s, restore_s, stall_s = [], [], [], [], []
    abstract = state.abstract_state(cfg, tx)
    for rep in range(args.reps):
        w, r = plain_write_read(os.path.join(args.dir, "plain.bin"), nbytes)
        plain_w.append(w)
        plain_r.append(r)
        workdir = os.path.join(args.dir, f"run{rep}")
        saver = checkpoint.Checkpointer(workdir, cfg)
        t = time.perf_counter()
        saver.save(1, st, None, force=True)
        stall_s.append(time.perf_counter() - t)  # what the training loop waits for
        saver.manager.wait_until_finished()
        save_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        restored = saver.restore_latest(abstract, shardings, None)
        jax.block_until_ready(restored[0])
        restore_s.append(time.perf_counter() - t)
        saver.close()
        shutil.rmtree(workdir)

    # One 270M train step at the given batch, for the stall fraction.
    holder = {"state": st}

    def run():
        holder["state"], m = compiled(holder["state"], batch)
        return m

    step_s = median_time(run, reps=2, warmup=1)

    med = statistics.median
    gib = nbytes / 2 ** 30
    print(f"plain sequential write : {gib / med(plain_w):7.2f} GiB/s  ({med(plain_w):.2f} s)")
    print(f"orbax checkpoint save  : {gib / med(save_s):7.2f} GiB/s  ({med(save_s):.2f} s)  "
          f"= {med(plain_w) / med(save_s):.2f} x plain write")
    print(f"plain sequential read  : {gib / med(plain_r):7.2f} GiB/s  ({med(plain_r):.2f} s)")
    print(f"orbax checkpoint restore: {gib / med(restore_s):6.2f} GiB/s  ({med(restore_s):.2f} s)  "
          f"= {med(plain_r) / med(restore_s):.2f} x plain read")
    print(f"async save stall       : {med(stall_s):.2f} s = {med(stall_s) / step_s:.1%} of one "
          f"train step ({step_s:.2f} s at batch {args.batch} x {args.seq})")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
