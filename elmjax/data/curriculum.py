"""What the trainer reads from: the data pipeline of the current curriculum phase.

``TrainData(cfg)`` follows ``config.curriculum_phases(cfg)``: one grain pipeline per
phase, each with its own mixture and data overrides, switched at the exact step where
the next phase starts. A config without a ``curriculum`` section has a single phase.
The state — which phase is open and that pipeline's position — is saved with every
checkpoint through grain's Orbax handler, so resuming before, at or after a phase
boundary reads exactly the batches the uninterrupted run would.
"""

from __future__ import annotations

import copy
import json

from elmjax.config import PhaseSpan, curriculum_phases
from elmjax.data import pipeline


def phase_config(cfg, phase: PhaseSpan):
    """The run config as the data pipeline of ``phase`` sees it (mixture + data overrides)."""
    out = copy.deepcopy(cfg)
    out.data.mixture = phase.mixture
    for key, value in phase.data.items():
        out.data[key] = value
    return out


class TrainData:
    """Batches for the trainer: ``next_batch(step)`` returns the host's share as numpy arrays."""

    def __init__(self, cfg, process_index: int | None = None, process_count: int | None = None):
        self.cfg = cfg
        self.phases = curriculum_phases(cfg)
        self.has_curriculum = "curriculum" in cfg and bool(cfg.curriculum.get("phases"))
        self._host = (process_index, process_count)
        self._current: PhaseSpan | None = None
        self._iterator = None
        # Every phase's sources, tokenizer and settings are checked now, not at its first step.
        for phase in self.phases:
            pipeline.make_dataset(phase_config(cfg, phase), None, *self._host)

    def describe(self) -> str:
        """One line for the start-up narration."""
        per_step = f"{self.cfg.train.global_batch_size} x {self.cfg.data.seq_len} tokens per step"
        if not self.has_curriculum:
            return f"mixture {self.cfg.data.mixture}, tokenizer {self.cfg.data.tokenizer}, {per_step}"
        spans = ", ".join(f"{p.name} [{p.start}, {p.end}) on {p.mixture}" for p in self.phases)
        return f"curriculum {spans}; tokenizer {self.cfg.data.tokenizer}, {per_step}"

    def phase_at(self, step: int) -> PhaseSpan:
        """The phase that ``step`` (0-based, the step about to run) belongs to."""
        for phase in self.phases:
            if phase.start <= step < phase.end:
                return phase
        return self.phases[-1]

    def phase_name(self, step: int) -> str | None:
        """Name of the phase of ``step`` (None without a curriculum)."""
        return self.phase_at(step).name if self.has_curriculum else None

    def next_batch(self, step: int) -> dict:
        """The host's share of the batch for ``step`` (``inputs``, ``targets``, ...)."""
        phase = self.phase_at(step)
        if self._current is None or phase.index != self._current.index:
            self._open(phase)
        return next(self._iterator)

    def _open(self, phase: PhaseSpan, state=None, start_epoch: int = 0) -> None:
        self.close()
        self._current = phase
        self._iterator = pipeline.make_train_iterator(phase_config(self.cfg, phase), None, *self._host,
                                                      start_epoch=start_epoch)
        if state is not None:
            self._iterator.set_state(state)

    def stats(self) -> dict:
        """Per-source counts of the open phase's pipeline (empty before the first batch)."""
        return pipeline.source_stats(self._iterator) if self._iterator is not None else {}

    def close(self) -> None:
        """Stops the open pipeline's prefetching."""
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None

    # grain's Orbax handler calls these (bytes: this is not a grain DatasetIterator itself).
    def get_state(self) -> bytes:
        """The open phase and its pipeline position, as JSON bytes."""
        return json.dumps({
            "phase": None if self._current is None else self._current.name,
            "iterator": None if self._iterator is None else self._iterator.get_state(),
        }).encode()

    def set_state(self, state: bytes) -> None:
        """Reopens the saved phase at the saved position (a phase not yet opened stays closed)."""
        saved = json.loads(state)
        self.close()
        self._current = None
        if saved.get("phase") is None:
            return
        by_name = {p.name: p for p in self.phases}
        if saved["phase"] not in by_name:
            raise ValueError(f"the checkpoint's data position is in phase {saved['phase']!r}, which "
                             f"this config's curriculum does not have ({sorted(by_name)})")
        self._open(by_name[saved["phase"]], saved["iterator"])

    def resplit(self, positions: dict) -> None:
        """Continues from positions saved by another number of hosts (``data.allow_resplit``).

        Takes ``{old process index: saved JSON}`` (:func:`elmjax.data.hosts.saved_positions`);
        opens the saved phase with this host's share of the shards, every source at a new
        epoch (see :mod:`elmjax.data.hosts`)."""
        from elmjax.data import hosts

        name, epoch = hosts.resplit_start(positions)
        self.close()
        self._current = None
        if name is None:
            return
        by_name = {p.name: p for p in self.phases}
        if name not in by_name:
            raise ValueError(f"the checkpoint's data position is in phase {name!r}, which "
                             f"this config's curriculum does not have ({sorted(by_name)})")
        self._open(by_name[name], start_epoch=epoch)

    def start_prefetch(self) -> None:
        """Called by grain's handler after a restore: restarts the pipeline's prefetch."""
        start = getattr(self._iterator, "start_prefetch", None)
        if start is not None:
            start()
