"""What the trainer reads from: the data pipeline of the current curriculum phase.

``curriculum_phases(cfg)`` reads the phases of a run config (validated here, registered
with ``elmjax.config``). ``TrainData(cfg)`` follows them: one grain pipeline per
phase, each with its own mixture and data overrides, switched at the exact step where
the next phase starts. A config without a ``curriculum`` section has a single phase.
The state — which phase is open and that pipeline's position — is saved with every
checkpoint through grain's Orbax handler, so resuming before, at or after a phase
boundary reads exactly the batches the uninterrupted run would.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os

from elmjax import config as config_lib
from elmjax import storage
from elmjax.config import need
from elmjax.data import pipeline

PHASE_LR = ("continue", "constant", "linear_decay", "cosine_decay")


@dataclasses.dataclass(frozen=True)
class PhaseSpan:
    """One curriculum phase: steps ``[start, end)``, its mixture, data overrides, LR segment."""

    index: int
    name: str
    start: int
    end: int
    mixture: str
    data: dict
    lr_schedule: str = "continue"


def curriculum_phases(cfg) -> list[PhaseSpan]:
    """The run's phases in order. Without a ``curriculum`` section: one phase over
    ``data.mixture`` covering every step.

    A curriculum section names its phases in order (``curriculum.phases = "web,refined"``)
    and holds one sub-section per phase with ``mixture``, a length (``steps`` or
    ``fraction`` of ``train.steps``; the last phase may leave both 0 to take the rest),
    optional ``data`` overrides and ``lr_schedule`` (one of ``PHASE_LR``).
    """
    total = int(cfg.train.steps)
    if "curriculum" not in cfg or not cfg.curriculum.get("phases"):
        return [PhaseSpan(0, "main", 0, total, cfg.data.mixture, {})]
    names = [n.strip() for n in cfg.curriculum.phases.split(",") if n.strip()]
    for name in names:
        need(name in cfg.curriculum, f"curriculum.{name}",
             f"phase {name!r} is listed in curriculum.phases but has no section")
    spans, start = [], 0
    for i, name in enumerate(names):
        ph = cfg.curriculum[name]
        steps, fraction = int(ph.get("steps", 0)), float(ph.get("fraction", 0.0))
        need(not (steps and fraction), f"curriculum.{name}", "give steps or fraction, not both")
        need(steps >= 0 and 0 <= fraction <= 1, f"curriculum.{name}",
             f"steps must be >= 0 and fraction in [0, 1], got {steps}, {fraction}")
        if steps or fraction:
            length = steps or int(round(fraction * total))
        else:
            need(i == len(names) - 1, f"curriculum.{name}",
                 "only the last phase may omit its length (it takes the remaining steps)")
            length = total - start
        need(ph.get("mixture"), f"curriculum.{name}.mixture", "every phase needs a mixture file")
        lr = ph.get("lr_schedule", "continue")
        need(lr in PHASE_LR, f"curriculum.{name}.lr_schedule", f"must be one of {PHASE_LR}, got {lr!r}")
        overrides = dict(ph.get("data", {}))
        for key in overrides:
            need(key in cfg.data, f"curriculum.{name}.data.{key}",
                 f"is not a data setting (allowed: {sorted(cfg.data)})")
        spans.append(PhaseSpan(i, name, start, start + length, ph.mixture, overrides, lr))
        start += length
    need(start == total, "curriculum",
         f"phases {[(s.name, s.end - s.start) for s in spans]} cover {start} steps but "
         f"train.steps is {total}; adjust the phase lengths")
    return spans


def _validate_curriculum(cfg):
    if "curriculum" not in cfg or "train" not in cfg or "data" not in cfg:
        return
    for span in curriculum_phases(cfg):
        need(span.end > span.start, f"curriculum.{span.name}", "a phase must have at least one step")
        path = storage.resolve(span.mixture)
        need(storage.is_remote(path) or os.path.exists(path),
             f"curriculum.{span.name}.mixture", f"file not found: {path}")


config_lib.register_validator(_validate_curriculum)


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
