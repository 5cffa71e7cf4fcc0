"""One process of the multi-process test: N train steps on fixed synthetic batches.

Usage: python multiprocess_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID STEPS
(NUM_PROCESSES=1 runs without jax.distributed). Prints one JSON line with the losses.
"""

import json
import sys

import jax
import numpy as np


def main():
    coordinator, nprocs, pid, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    from elmjax import parallel

    if nprocs > 1:
        parallel.initialize_distributed(coordinator, nprocs, pid)
    from elmjax.train import optimizer, state
    from elmjax.train.step import jit_train_step
    from tests.train.test_step import run_config, synthetic_batch

    cfg = run_config()
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 2, 2, 2
    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    st, shardings = state.init_state(cfg, mesh, tx, jax.random.key(0))
    bsh = parallel.batch_sharding(mesh, cfg)
    step = jit_train_step(cfg, tx, shardings, bsh)
    losses = []
    for s in range(steps):
        full = synthetic_batch(cfg, s)  # every process knows the global batch; it feeds its rows
        index = bsh.addressable_devices_indices_map(full["inputs"].shape)
        rows = sorted({(sl[0].start or 0, sl[0].stop) for sl in index.values()})
        local = {k: np.concatenate([v[a:b] for a, b in rows]) for k, v in full.items()}
        st, m = step(st, parallel.global_batch(local, bsh))
        losses.append(float(m["loss"]))
    norm = float(jax.jit(lambda p: sum(jax.numpy.sum(x ** 2) for x in jax.tree.leaves(p)))(st["params"]))
    print(json.dumps({"process": pid, "devices": jax.device_count(), "losses": losses,
                      "param_sq_norm": norm}), flush=True)


if __name__ == "__main__":
    main()
