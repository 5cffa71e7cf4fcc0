"""Packing tokenized documents into fixed-length rows, in numpy, a round at a time.

A *piece* is a span of one document's input tokens, at most ``seq_len`` long
(long documents are split into pieces before packing). Its targets are the
next tokens of the same document, so no target crosses a document boundary.
:func:`pack_pieces` lays pieces into rows first-fit-decreasing; every piece
becomes one segment of its row with positions from 0.

:class:`PackIterDataset` is the grain stage that turns a stream of piece blocks
into batches. Its state is the upstream state at the start of the current
*round* (a group of blocks packed together), the round's index and how many of
its rows were emitted: restoring re-packs that round and skips those rows, so a
restored iterator yields exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import copy

import grain
import numpy as np

from elmjax.data.sources import SourceStats

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")


def pack_pieces(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seq_len: int,
                pad_id: int = 0, label_mask: np.ndarray | None = None) -> dict:
    """Packs pieces into rows with first-fit-decreasing.

    Takes ``tokens`` (int32 ``[T]``: the documents' token ids), each piece's
    ``starts`` and ``lengths`` (``[P]``; piece ``k`` has inputs
    ``tokens[starts[k]:starts[k]+lengths[k]]`` and targets one token later;
    ``1 <= lengths[k] <= seq_len``). Returns the batch keys of
    :data:`BATCH_KEYS`, each ``[rows, seq_len]`` (int32; ``loss_mask`` float32),
    with padding ``pad_id`` / segment 0 / mask 0. ``label_mask`` (float32 ``[T]``, optional)
    says which tokens may be predicted: a position's ``loss_mask`` is its target's entry
    (instruction tuning trains on assistant tokens only); by default every target counts.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    num = len(lengths)
    order = np.argsort(-lengths, kind="stable")
    row = np.empty(num, dtype=np.int64)
    offset = np.zeros(num, dtype=np.int64)
    segment = np.ones(num, dtype=np.int32)
    # Full-length pieces each take a row of their own; they sort first.
    full = int(np.count_nonzero(lengths == seq_len))
    row[order[:full]] = np.arange(full)
    free = np.empty(num - full, dtype=np.int64)  # remaining room of the partial rows
    used = np.zeros(num - full, dtype=np.int32)  # segments already in each partial row
    open_rows = 0
    for k in order[full:]:
        n = lengths[k]
        fits = free[:open_rows] >= n
        r = int(np.argmax(fits)) if open_rows else 0
        if not open_rows or not fits[r]:
            r = open_rows
            open_rows += 1
            free[r] = seq_len
        row[k] = full + r
        offset[k] = seq_len - free[r]
        used[r] += 1
        segment[k] = used[r]
        free[r] -= n
    rows = full + open_rows
    total = int(lengths.sum())
    piece = np.repeat(np.arange(num), lengths)
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = starts[piece] + within
    r, c = row[piece], offset[piece] + within
    out = {
        "inputs": np.full((rows, seq_len), pad_id, dtype=np.int32),
        "targets": np.full((rows, seq_len), pad_id, dtype=np.int32),
        "segment_ids": np.zeros((rows, seq_len), dtype=np.int32),
        "positions": np.zeros((rows, seq_len), dtype=np.int32),
        "loss_mask": np.zeros((rows, seq_len), dtype=np.float32),
    }
    out["inputs"][r, c] = tokens[src]
    out["targets"][r, c] = tokens[src + 1]
    out["segment_ids"][r, c] = segment[piece]
    out["positions"][r, c] = within
    out["loss_mask"][r, c] = 1.0 if label_mask is None else label_mask[src + 1]
    return out


def pad_pieces(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seq_len: int,
               pad_id: int = 0, label_mask: np.ndarray | None = None) -> dict:
    """Like :func:`pack_pieces` but one piece per row, in the given order, padded at the end.

    Returns the batch keys of :data:`BATCH_KEYS`, each ``[len(lengths), seq_len]``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = len(lengths)
    total = int(lengths.sum())
    piece = np.repeat(np.arange(rows), lengths)
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = np.asarray(starts, dtype=np.int64)[piece] + within
    out = empty_rows(rows, seq_len, pad_id)
    out["inputs"][piece, within] = tokens[src]
    out["targets"][piece, within] = tokens[src + 1]
    out["segment_ids"][piece, within] = 1
    out["positions"][piece, within] = within
    out["loss_mask"][piece, within] = 1.0 if label_mask is None else label_mask[src + 1]
    return out


def empty_rows(rows: int, seq_len: int, pad_id: int) -> dict:
    """All-padding rows (``[rows, seq_len]`` per batch key), to fill a last short batch."""
    return {k: (np.full((rows, seq_len), pad_id, np.int32) if k in ("inputs", "targets") else
                np.zeros((rows, seq_len), np.float32 if k == "loss_mask" else np.int32))
            for k in BATCH_KEYS}


class PackIterDataset(grain.IterDataset):
    """Batches of packed rows from a stream of piece blocks.

    The parent yields dicts with ``source`` (name), ``tokens`` (int32 ``[T]``),
    ``piece_start``/``piece_len`` (``[P]``) and ``stats`` (a
    :meth:`SourceStats.to_dict` delta). Each round gathers blocks until they hold
    ``round_rows * seq_len`` tokens, packs them and shuffles the rows with
    ``seed``. Yields dicts of :data:`BATCH_KEYS`, each ``[batch_size, seq_len]``;
    when the parent ends, the last batch is padded with empty rows. Blocks may carry a
    ``label_mask`` (float32 ``[T]``, see :func:`pack_pieces`); ``pack=False`` puts each
    piece in a row of its own (:func:`pad_pieces`) instead of packing.
    """

    def __init__(self, parent, *, batch_size: int, seq_len: int, round_rows: int,
                 pad_id: int, seed: int, source_names, pack: bool = True):
        super().__init__(parent)
        self.batch_size, self.seq_len, self.round_rows = batch_size, seq_len, round_rows
        self.pad_id, self.seed, self.source_names = pad_id, seed, tuple(source_names)
        self.pack = pack

    def __iter__(self):
        return PackIterator(self._parent.__iter__(), self)


class PackIterator(grain.DatasetIterator):
    """Iterator of :class:`PackIterDataset`; also keeps the per-source counts."""

    def __init__(self, parent, ds: PackIterDataset):
        super().__init__(parent)
        self._ds = ds
        self.stats = {name: SourceStats() for name in ds.source_names}
        self.packed_tokens = {name: 0 for name in ds.source_names}
        self._round = -1  # index of the current (or last) round
        self._rows = None  # the current round's packed rows
        self._next_row = 0
        self._round_start = None  # (parent state, stats, packed) when the round began
        self._exhausted = False

    def _snapshot(self):
        return ({n: s.to_dict() for n, s in self.stats.items()}, dict(self.packed_tokens))

    def _build_round(self) -> bool:
        ds = self._ds
        start = (copy.deepcopy(self._parent.get_state()),) + self._snapshot()
        blocks, tokens = [], 0
        while tokens < ds.round_rows * ds.seq_len:
            try:
                block = next(self._parent)
            except StopIteration:
                self._exhausted = True
                break
            for name, delta in block["stats"].items():
                self.stats.setdefault(name, SourceStats()).add(delta)
            n = int(np.sum(block["piece_len"]))
            self.packed_tokens[block["source"]] = self.packed_tokens.get(block["source"], 0) + n
            tokens += n
            blocks.append(block)
        if not tokens:
            return False
        offsets = np.cumsum([0] + [len(b["tokens"]) for b in blocks[:-1]])
        label_mask = (np.concatenate([b["label_mask"] for b in blocks])
                      if "label_mask" in blocks[0] else None)
        packed = (pack_pieces if ds.pack else pad_pieces)(
            np.concatenate([b["tokens"] for b in blocks]),
            np.concatenate([b["piece_start"] + o for b, o in zip(blocks, offsets)]),
            np.concatenate([b["piece_len"] for b in blocks]), ds.seq_len, ds.pad_id, label_mask)
        self._round += 1
        perm = np.random.default_rng([ds.seed, self._round]).permutation(len(packed["inputs"]))
        self._rows = {k: v[perm] for k, v in packed.items()}
        self._next_row = 0
        self._round_start = start
        return True

    def __next__(self):
        ds = self._ds
        parts, need = [], ds.batch_size
        while need:
            if self._rows is None and (self._exhausted or not self._build_round()):
                break
            total = len(self._rows["inputs"])
            take = min(need, total - self._next_row)
            parts.append({k: v[self._next_row:self._next_row + take] for k, v in self._rows.items()})
            self._next_row += take
            need -= take
            if self._next_row == total:
                self._rows = None
        if need == ds.batch_size:
            raise StopIteration
        if need:
            parts.append(empty_rows(need, ds.seq_len, ds.pad_id))
        if len(parts) == 1:
            return {k: np.ascontiguousarray(v) for k, v in parts[0].items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in BATCH_KEYS}

    def get_state(self):
        if self._rows is None:
            stats, packed = self._snapshot()
            return {"parent": copy.deepcopy(self._parent.get_state()), "round": self._round,
                    "rows_done": 0, "stats": stats, "packed_tokens": packed,
                    "exhausted": self._exhausted}
        parent, stats, packed = self._round_start
        return {"parent": copy.deepcopy(parent), "round": self._round, "rows_done": self._next_row,
                "stats": stats, "packed_tokens": packed, "exhausted": False}

    def set_state(self, state):
        self._parent.set_state(state["parent"])
        self.stats = {n: SourceStats.from_dict(d) for n, d in state["stats"].items()}
        self.packed_tokens = dict(state["packed_tokens"])
        self._exhausted = bool(state["exhausted"])
        self._rows = None
        if state["rows_done"]:
            self._round = state["round"] - 1
            self._build_round()
            self._next_row = state["rows_done"]
        else:
            self._round = state["round"]
