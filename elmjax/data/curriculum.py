"""What the trainer reads from: the data pipeline of the current phase, and its state.

``TrainData(cfg)`` owns one grain iterator per curriculum phase (a config without a
``curriculum`` block has a single phase over ``data.mixture``). Its state — the phase
and each phase iterator's position — is saved with every checkpoint through grain's
Orbax handler, so a resumed run reads exactly the batches the uninterrupted run would.
"""

from __future__ import annotations

import json

from elmjax.data import pipeline


class TrainData:
    """Batches for the trainer: ``next_batch(step)`` returns the host's share as numpy arrays."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.mixture = cfg.data.mixture
        self._iterator = pipeline.make_train_iterator(cfg)

    def describe(self) -> str:
        """One line for the start-up narration."""
        return (f"mixture {self.mixture}, tokenizer {self.cfg.data.tokenizer}, "
                f"{self.cfg.train.global_batch_size} x {self.cfg.data.seq_len} tokens per step")

    def phase_name(self, step: int) -> str | None:
        """Name of the curriculum phase that ``step`` belongs to (None without a curriculum)."""
        return None

    def next_batch(self, step: int) -> dict:
        """The host's share of the batch for ``step`` (``inputs``, ``targets``, ...)."""
        return next(self._iterator)

    # grain's Orbax handler calls these (bytes: it is not a grain DatasetIterator itself).
    def get_state(self) -> bytes:
        return json.dumps({"iterator": self._iterator.get_state()}).encode()

    def set_state(self, state: bytes) -> None:
        self._iterator.set_state(json.loads(state)["iterator"])

    def start_prefetch(self) -> None:
        """Called by grain's handler after a restore: restarts the iterator's prefetch."""
        start = getattr(self._iterator, "start_prefetch", None)
        if start is not None:
            start()
