"""Random-token training batches and a compiled train step on them, for benchmarks.

What a training benchmark times without a data pipeline: ``random_train_batch`` has the
batch layout of ``elmjax.train.step`` (one document per row, every target counted) and
``compiled_train_step`` builds a run config's sharded state and ahead-of-time compiled step.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from elmjax import parallel
from elmjax.train import optimizer, state
from elmjax.train.step import jit_train_step


def random_train_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """A numpy batch of random tokens: ``inputs``/``targets``/``segment_ids``/``positions``
    int32 and ``loss_mask`` float32 (all ones), each ``[batch, seq_len]``."""
    tok = np.random.default_rng(seed).integers(0, vocab_size, (batch, seq_len + 1)).astype(np.int32)
    return {"inputs": tok[:, :-1], "targets": tok[:, 1:],
            "segment_ids": np.ones((batch, seq_len), np.int32),
            "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
            "loss_mask": np.ones((batch, seq_len), np.float32)}


def compiled_train_step(cfg, seed: int = 0):
    """``(step, state, batch, compile_seconds)`` for run config ``cfg`` on all local devices.

    ``step(state, batch) -> (state, metrics)`` is compiled ahead of time with the run's
    shardings (state donated); the batch is ``train.global_batch_size x data.seq_len``
    random tokens placed as a global array.
    """
    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    st, shardings = state.init_state(cfg, mesh, tx, jax.random.key(seed))
    bsh = parallel.batch_sharding(mesh, cfg)
    batch = parallel.global_batch(random_train_batch(
        cfg.model.vocab_size, cfg.train.global_batch_size, cfg.data.seq_len, seed), bsh)
    fn = jit_train_step(cfg, tx, shardings, bsh)
    t = time.perf_counter()
    compiled = fn.lower(st, batch).compile()
    return compiled, st, batch, time.perf_counter() - t
