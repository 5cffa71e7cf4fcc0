"""The training data pipeline as a grain graph.

::

    per source:  shards (this host's share) --read--> windows of documents
                 --shuffle window, char filter, tokenize (BOS/EOS, NFC), token filter,
                   split into pieces of <= seq_len-->  DocumentWindows
    mix:         token-weighted interleaving of the sources in blocks   MixIterDataset
    [workers]:   grain mp_prefetch (each worker reads a slice of every source)
    pack:        first-fit-decreasing into rows, shuffled, batched       PackIterDataset
    [prefetch]:  a thread keeps batches ready

Work is done a window (``data.shuffle_buffer`` documents) at a time -- one
SentencePiece call, numpy filters and packing -- because per-element Python
work, not tokenization, is what limits a grain pipeline's throughput.

Mixing is deterministic: the next block comes from the source furthest below
its share of the tokens emitted so far, so the realised token proportions
follow the weights within one block. Every stage's state is a few integers
(shard, record, window and round positions plus counters), so the iterator's
state is small JSON and a restored iterator continues exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import zlib

import grain
import numpy as np

from elmjax import storage
from elmjax.data import filters, mixture, sources
from elmjax.data.packing import PackIterDataset
from elmjax.data.sources import SourceStats
from elmjax.data.tokenizer import Tokenizer

log = logging.getLogger("elmjax.data")


class DocumentWindows(grain.IterDataset):
    """One source as a stream of tokenized, filtered windows of documents.

    Takes the source's :class:`~elmjax.data.mixture.SourceSpec`, its shards
    already divided for this host (``shards``, ``record_offset``,
    ``record_stride``; see :func:`sources.assign_part`), the :class:`Tokenizer`
    and the ``data`` settings. Yields dicts: ``tokens`` int32 ``[T]`` (kept
    documents with BOS/EOS, concatenated), ``piece_start`` int64 / ``piece_len``
    int32 ``[P]`` (pieces of at most ``seq_len`` inputs), ``stats`` (a
    :class:`SourceStats` dict for the records this window consumed). With
    ``repeat`` the shards are read forever, in a new seeded order each epoch;
    without it once, in sorted order and unshuffled; ``start_epoch`` numbers the first
    epoch (a re-split restart begins a new one, see :mod:`elmjax.data.hosts`). A source
    whose whole share on this host keeps no document in a full pass ends here (with a
    warning; its counts show why) and the mix goes on with the other sources.
    """

    def __init__(self, spec, shards, record_offset, record_stride, tokenizer, *, seq_len,
                 window, min_chars, min_tokens, long_doc_policy, seed, repeat, start_epoch=0):
        super().__init__()
        self.spec, self.shards = spec, list(shards)
        self.record_offset, self.record_stride = record_offset, record_stride
        self.tokenizer, self.seq_len, self.window = tokenizer, seq_len, window
        self.min_chars, self.min_tokens = min_chars, min_tokens
        self.long_doc_policy, self.seed, self.repeat = long_doc_policy, seed, repeat
        self.start_epoch = start_epoch

    def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
        """Keeps worker ``sl.start`` of ``sl.step``'s part (grain calls this in ``mp_prefetch``)."""
        del sequential_slice
        self.shards, self.record_offset, self.record_stride = sources.assign_part(
            self.shards, sl.start or 0, sl.step or 1, self.record_offset, self.record_stride)

    def __iter__(self):
        return _WindowIterator(self)


class _WindowIterator(grain.DatasetIterator):
    def __init__(self, ds: DocumentWindows):
        super().__init__()
        self._ds = ds
        self._key = zlib.crc32(ds.spec.name.encode())
        self._tfds = sources.open_tfds(ds.spec.tfds_name, ds.spec.split, ds.spec.data_dir) \
            if ds.spec.format == "tfds" else None
        self._epoch, self._shard, self._record, self._windows = ds.start_epoch, 0, 0, 0
        self._kept_this_epoch = 0
        self._pending = SourceStats()
        self._warned = False
        self._position = {s: i for i, s in enumerate(ds.shards)}
        self._records = None

    # ----------------------------------------------------------- reading

    def _order(self):
        shards = self._ds.shards if self._tfds is None else ["tfds"]
        if not self._ds.repeat:
            return shards
        rng = np.random.default_rng([self._ds.seed, self._key, self._epoch])
        return [shards[i] for i in rng.permutation(len(shards))]

    def _tfds_records(self, start):
        ds, n = self._ds, len(self._tfds)
        field = ds.spec.read_options.field
        m = max(0, -(-(n - ds.record_offset) // ds.record_stride))
        order = grain.MapDataset.range(m)
        if ds.repeat:
            order = order.shuffle(seed=int(np.random.default_rng(
                [ds.seed, self._key, self._epoch]).integers(2**31)))
        for pos in range(start, m):
            record = self._tfds[ds.record_offset + ds.record_stride * order[pos]]
            value = record.get(field) if isinstance(record, dict) else None
            text = sources._check_text(value, self._pending)
            if text is not None:
                yield pos, text

    def _open(self):
        if self._tfds is not None:
            return self._tfds_records(self._record)
        ds, order = self._ds, self._order()
        shard = order[self._shard]
        storage.prefetch(order[self._shard + 1:self._shard + 1 + storage.PREFETCH_FILES])
        offset = ds.record_offset
        if ds.record_stride > 1:  # rotate by the shard's place so small shards reach every part
            offset = (offset + self._position[shard]) % ds.record_stride
        return sources.read_shard(shard, ds.spec.read_options, self._pending, self._record,
                                  offset, ds.record_stride)

    def _num_shards(self):
        return 1 if self._tfds is not None else len(self._ds.shards)

    def _next_text(self):
        """Next document's text in this epoch, or None when the epoch's shards are read."""
        while self._shard < self._num_shards():
            if self._records is None:
                self._records = self._open()
            for index, text in self._records:
                self._record = index + 1
                return text
            self._records, self._record = None, 0
            self._shard += 1
        return None

    # ----------------------------------------------------------- processing

    def _process(self, texts):
        ds, stats = self._ds, self._pending
        stats.documents_read += len(texts)
        if ds.repeat:
            rng = np.random.default_rng([ds.seed, self._key, ds.record_offset, self._windows])
            texts = [texts[i] for i in rng.permutation(len(texts))]
        keep = filters.char_filter_mask(texts, ds.min_chars)
        stats.filtered("too_few_chars", int(len(texts) - keep.sum()))
        texts = [t for t, k in zip(texts, keep) if k]
        ids = ds.tokenizer.encode_batch(texts)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        keep = filters.token_filter_mask(lengths, ds.min_tokens)
        stats.filtered("too_few_tokens", int(len(ids) - keep.sum()))
        if not keep.all():
            ids = [x for x, k in zip(ids, keep) if k]
            lengths = lengths[keep]
        total = int(lengths.sum())
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=total)
        starts, lens = split_pieces(lengths, ds.seq_len, ds.long_doc_policy)
        stats.documents_kept += len(ids)
        stats.tokens += total
        stats.chunks += len(lens)
        stats.tokens_dropped += int((lengths - 1).sum() - lens.sum())
        self._kept_this_epoch += len(ids)
        return tokens, starts, lens

    def __next__(self):
        ds, texts = self._ds, []
        # A window never crosses an epoch boundary, so an epoch's counts are final at its end.
        while len(texts) < ds.window:
            if self._shard >= self._num_shards():
                if texts or not ds.repeat:
                    break
                if self._kept_this_epoch == 0:  # nothing usable in this host's share
                    if not self._warned:
                        self._warned = True
                        log.warning(
                            "source %r: a full pass over this host's %d shard(s) kept no document "
                            "(every record skipped or filtered: %s); this host goes on without "
                            "it. Run `elmjax data inspect --one-pass` to see why.", ds.spec.name,
                            self._num_shards(), self._pending.records_skipped or "filtered")
                    break
                self._epoch, self._shard, self._kept_this_epoch = self._epoch + 1, 0, 0
            text = self._next_text()
            if text is not None:
                texts.append(text)
        if not texts and self._pending.empty():
            raise StopIteration
        tokens, starts, lens = self._process(texts)
        self._windows += 1
        stats = self._pending.pop()
        return {"tokens": tokens, "piece_start": starts, "piece_len": lens, "stats": stats}

    def get_state(self):
        return {"epoch": self._epoch, "shard": self._shard, "record": self._record,
                "windows": self._windows, "kept_this_epoch": self._kept_this_epoch}

    def set_state(self, state):
        self._epoch, self._shard, self._record = state["epoch"], state["shard"], state["record"]
        self._windows, self._kept_this_epoch = state["windows"], state["kept_this_epoch"]
        self._records = None
        self._pending.pop()


def split_pieces(lengths: np.ndarray, seq_len: int, policy: str = "split"):
    """Cuts documents into pieces of at most ``seq_len`` inputs.

    Takes each document's token count (with BOS/EOS; documents laid end to end)
    and returns ``(starts int64 [P], lengths int32 [P])``. A document of ``n``
    tokens has ``n - 1`` inputs (its targets are the tokens one later);
    ``"split"`` keeps all of them in consecutive pieces, ``"truncate"`` keeps
    only the first piece (corenet's policy).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    doc_start = np.cumsum(lengths) - lengths
    inputs = np.maximum(lengths - 1, 0)
    counts = -(-inputs // seq_len)
    if policy == "truncate":
        counts = np.minimum(counts, 1)
    doc = np.repeat(np.arange(len(lengths)), counts)
    j = np.arange(len(doc)) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = doc_start[doc] + j * seq_len
    lens = np.minimum(seq_len, inputs[doc] - j * seq_len).astype(np.int32)
    return starts, lens


class MixIterDataset(grain.IterDataset):
    """Interleaves sources' windows in blocks of about ``block_tokens`` tokens by weight.

    Takes a name -> :class:`DocumentWindows` mapping and name -> weight. The next
    block always comes from the source with the fewest tokens emitted relative to
    its weight. Yields the piece-block dicts :class:`PackIterDataset` consumes
    (plus ``source``). Ends when every source has ended (one pass); with ``repeat``
    that means no source has a usable document here, which raises ``ValueError``.
    """

    def __init__(self, parents: dict, weights: dict, block_tokens: int, repeat: bool = False):
        self.names = list(parents)
        super().__init__([parents[n] for n in self.names])
        self.weights = [float(weights[n]) for n in self.names]
        self.block_tokens = block_tokens
        self.repeat = repeat

    def __iter__(self):
        return _MixIterator([p.__iter__() for p in self._parents], self)


class _MixIterator(grain.DatasetIterator):
    def __init__(self, parents, ds: MixIterDataset):
        super().__init__(parents)
        self._ds = ds
        n = len(ds.names)
        self._emitted = [0] * n
        self._done = [False] * n
        self._window = [None] * n  # the current window of each source
        self._pos = [0] * n  # pieces of it already emitted
        self._before = [p.get_state() for p in parents]  # state before the current window

    def _pull(self, i):
        """Makes source i's current window non-empty; False when the source has ended."""
        stats = SourceStats()
        while True:
            before = copy.deepcopy(self._parents[i].get_state())
            try:
                w = next(self._parents[i])
            except StopIteration:
                self._done[i] = True
                self._window[i] = {"tokens": np.zeros(1, np.int32), "piece_start": np.zeros(0, np.int64),
                                   "piece_len": np.zeros(0, np.int32), "stats": stats.to_dict()}
                self._pos[i] = 0
                return not stats.empty()
            stats.add(w["stats"])
            if len(w["piece_len"]):
                w["stats"] = stats.to_dict()
                self._window[i], self._pos[i], self._before[i] = w, 0, before
                return True

    def __next__(self):
        ds = self._ds
        while True:
            live = [i for i in range(len(ds.names)) if not self._done[i] or self._window[i] is not None]
            if not live:
                if ds.repeat:
                    raise ValueError(
                        f"no source of the mixture has a usable document on this host: a full "
                        f"pass over its shards of {ds.names} kept no document (every record "
                        f"skipped or filtered); run `elmjax data inspect --one-pass` to see why")
                raise StopIteration
            i = min(live, key=lambda k: (self._emitted[k] / ds.weights[k], k))
            if self._window[i] is None and not self._pull(i):
                self._window[i] = None
                continue
            w, a = self._window[i], self._pos[i]
            lens = w["piece_len"]
            # Take pieces until the block holds block_tokens tokens.
            b = a + int(np.searchsorted(np.cumsum(lens[a:]), ds.block_tokens)) + 1
            b = min(b, len(lens))
            stats = w["stats"] if a == 0 else {}
            if b > a:
                lo, hi = int(w["piece_start"][a]), int(w["piece_start"][b - 1] + lens[b - 1]) + 1
                block = {"tokens": w["tokens"][lo:hi], "piece_start": w["piece_start"][a:b] - lo,
                         "piece_len": lens[a:b]}
            else:
                block = {"tokens": np.zeros(1, np.int32), "piece_start": lens[:0].astype(np.int64),
                         "piece_len": lens[:0]}
            n = int(lens[a:b].sum())
            self._emitted[i] += n
            self._pos[i] = b
            if b == len(lens):
                self._window[i] = None
                self._before[i] = copy.deepcopy(self._parents[i].get_state())
            block.update(source=ds.names[i], stats={ds.names[i]: stats} if stats else {})
            return block

    def get_state(self):
        return {"emitted": dict(zip(self._ds.names, self._emitted)),
                "done": dict(zip(self._ds.names, self._done)),
                "sources": {n: {"state": copy.deepcopy(self._before[i]),
                                "pieces": self._pos[i] if self._window[i] is not None else -1}
                            for i, n in enumerate(self._ds.names)}}

    def set_state(self, state):
        for i, n in enumerate(self._ds.names):
            self._emitted[i] = state["emitted"].get(n, 0)
            self._done[i] = state["done"].get(n, False)
            src = state["sources"].get(n)
            self._window[i], self._pos[i] = None, 0
            if src is None:  # a source new to this mixture starts from its beginning
                continue
            self._parents[i].set_state(src["state"])
            self._before[i] = copy.deepcopy(src["state"])
            if src["pieces"] >= 0:
                self._pull(i)
                self._pos[i] = src["pieces"]


# --------------------------------------------------------------------------- building


def _host(process_index, process_count):
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    return process_index, process_count


def make_dataset(cfg, mixture_path: str | None = None, process_index: int | None = None,
                 process_count: int | None = None, one_pass: bool = False, start_epoch: int = 0):
    """Builds this host's grain ``IterDataset`` of training batches.

    Takes the run config (sections ``data``, ``train``, ``model``), the mixture
    file (default ``cfg.data.mixture``) and this host's index and the host count
    (default ``jax.process_index()`` / ``jax.process_count()``); each source's
    shards are divided among hosts. ``one_pass`` reads every shard once, in
    order, without shuffling or repeating (for audits); ``start_epoch`` numbers every
    source's first epoch (see :mod:`elmjax.data.hosts`). Batches are dicts of
    ``[B, L]`` arrays, ``B = train.global_batch_size // process_count``,
    ``L = data.seq_len``: ``inputs``, ``targets``, ``segment_ids``, ``positions``
    (int32) and ``loss_mask`` (float32). Raises ``FileNotFoundError`` /
    :class:`~elmjax.data.mixture.MixtureError` / ``ValueError`` at start-up for a
    missing file, a malformed mixture or inconsistent settings.
    """
    d = cfg.data
    index, count = _host(process_index, process_count)
    if cfg.train.global_batch_size % count:
        raise ValueError(f"train.global_batch_size={cfg.train.global_batch_size} is not divisible "
                         f"by the {count} hosts")
    tokenizer = Tokenizer(d.tokenizer, num_threads=d.tokenizer_threads)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"data.tokenizer {d.tokenizer} has {tokenizer.vocab_size} pieces but "
                         f"model.vocab_size is {cfg.model.vocab_size}")
    specs = mixture.load(mixture_path or d.mixture)
    windows = {}
    min_quality = d.get("min_quality", None)
    for spec in specs:
        if spec.quality_field and min_quality is not None:
            spec = dataclasses.replace(spec, min_quality=float(min_quality))
        if spec.format == "tfds":
            shards = ["tfds"]
            sources.open_tfds(spec.tfds_name, spec.split, spec.data_dir)  # fail early if absent
        else:
            shards = sources.expand_paths(spec.paths, spec.base_dir)
        part = sources.assign_part(shards, index, count)
        windows[spec.name] = DocumentWindows(
            spec, *part, tokenizer, seq_len=d.seq_len, window=d.shuffle_buffer,
            min_chars=d.min_chars, min_tokens=d.min_tokens, long_doc_policy=d.long_doc_policy,
            seed=cfg.train.seed, repeat=not one_pass, start_epoch=start_epoch)
    block_tokens = d.mix_block_tokens or max(8 * d.seq_len, 1024)
    ds = MixIterDataset(windows, {s.name: s.weight for s in specs}, block_tokens,
                        repeat=not one_pass)
    if d.num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=d.num_workers, per_worker_buffer_size=d.worker_buffer_size))
    ds = PackIterDataset(ds, batch_size=cfg.train.global_batch_size // count, seq_len=d.seq_len,
                         round_rows=d.pack_rows, pad_id=tokenizer.pad_id, seed=cfg.train.seed,
                         source_names=[s.name for s in specs])
    if d.prefetch > 0 and not one_pass:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=d.prefetch)
    return ds


def make_train_iterator(cfg, mixture_path: str | None = None, process_index: int | None = None,
                        process_count: int | None = None, start_epoch: int = 0):
    """This host's training batches as a grain ``DatasetIterator`` (see :func:`make_dataset`).

    ``it.get_state()`` is small JSON; ``set_state`` on a fresh iterator built from
    the same config resumes exactly, and ``grain.checkpoint.CheckpointSave(it)``
    works with Orbax.
    """
    return make_dataset(cfg, mixture_path, process_index, process_count,
                        start_epoch=start_epoch).__iter__()


def source_stats(it) -> dict:
    """Per-source counts of a pipeline iterator so far.

    Takes an iterator from :func:`make_train_iterator`; returns ``{source name:
    {documents_read, documents_kept, documents_filtered: {filter: n},
    records_skipped: {reason: n}, tokens, chunks, tokens_dropped, tokens_packed}}``.
    With prefetching the counts run a few batches ahead of what was consumed.
    """
    from elmjax.data.packing import PackIterator

    node = it
    while not isinstance(node, PackIterator):
        parents = getattr(node, "_parents", ())
        if not parents:
            raise TypeError(f"{type(it).__name__} is not an elmjax data pipeline iterator")
        node = parents[0]
    return {name: dict(s.to_dict(), tokens_packed=node.packed_tokens.get(name, 0))
            for name, s in node.stats.items()}
