"""Streaming readers for the pretraining corpora in their native formats.

One function, :func:`read_shard`, turns one shard (a file, local or on any
``etils.epath`` backend such as ``gs://``) into a stream of ``(record_index,
text)`` pairs without loading the shard into memory:

=============  ==============================================  ============
format         files                                           text field
=============  ==============================================  ============
``refinedweb`` parquet (``content``, url, timestamp, dump, ...)  ``content``
``pile``       ``.jsonl.zst`` ``{"text", "meta"}`` or the       ``text``
               deduplicated release's parquet
``redpajama``  ``.jsonl`` (or ``.jsonl.zst``) ``{"text", "meta"}``  ``text``
``dolma``      ``.json.gz`` ``{"id", "text", "source", ...}``   ``text``
``jsonl``      JSON lines, plain / gzip / zstd                  ``text``
``text``       ``.txt``: one document per file (or per line)    --
=============  ==============================================  ============

JSON-lines files are decompressed by their magic bytes (gzip ``1f 8b``, zstd
``28 b5 2f fd``; :mod:`elmjax.data.streams`), so a file's name never has to be right.
Parquet text columns are read row group by row group as raw bytes, so one value that
is not UTF-8 costs one record. docs/data_robustness.md lists, per format, what can go
wrong in a shard and how it is counted.

Bad input never raises: it is counted in a :class:`SourceStats` under one of
:data:`SKIP_REASONS` and the reader goes on. ``tfds`` sources (random access)
are read by the pipeline through :func:`open_tfds`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any, Iterator

from etils import epath

from elmjax import storage
from elmjax.data import streams

log = logging.getLogger("elmjax.data")

FORMATS = ("refinedweb", "pile", "redpajama", "dolma", "jsonl", "text", "tfds")
DEFAULT_TEXT_FIELD = {"refinedweb": "content", "pile": "text", "redpajama": "text",
                      "dolma": "text", "jsonl": "text", "text": None, "tfds": "text"}

SKIP_REASONS = (
    "invalid_json",      # a line that does not parse as JSON
    "invalid_utf8",      # bytes that are not UTF-8 (or a JSON string with lone surrogates)
    "not_an_object",     # a JSON value that is not an object
    "missing_text",      # the text field is absent or null
    "text_not_string",   # the text field holds a number, list, ...
    "empty_text",        # the text field is "" or only whitespace
    "truncated_gzip",    # a gzip member cut short (the cut record is dropped)
    "truncated_zstd",    # a zstd frame cut short (the cut record is dropped)
    "corrupt_gzip",      # damaged deflate data or CRC: the rest of the file is dropped
    "corrupt_zstd",      # damaged zstd data or checksum: the rest of the file is dropped
    "invalid_parquet",   # no footer / not a parquet file
    "invalid_row_group", # parquet: a row group that cannot be decoded (each of its rows)
    "empty_file",        # a zero-byte shard
    "unreadable_file",   # an I/O error while reading the shard
    "excluded_set",      # pile: pile_set_name not in the kept list
)



@dataclasses.dataclass
class SourceStats:
    """Per-source counters; all are plain ints so they travel as JSON.

    ``documents_read``: records that parsed into a document; ``documents_kept``:
    documents that passed the filters; ``documents_filtered``: by filter name;
    ``records_skipped``: by reason (see :data:`SKIP_REASONS`); ``tokens``: tokens of
    the kept documents (with BOS and EOS); ``chunks``: pieces the kept documents
    were split into; ``tokens_dropped``: tokens cut by ``long_doc_policy=truncate``.
    """

    documents_read: int = 0
    documents_kept: int = 0
    documents_filtered: dict = dataclasses.field(default_factory=dict)
    records_skipped: dict = dataclasses.field(default_factory=dict)
    tokens: int = 0
    chunks: int = 0
    tokens_dropped: int = 0

    def skip(self, reason: str, n: int = 1) -> None:
        """Counts ``n`` records skipped for ``reason``."""
        self.records_skipped[reason] = self.records_skipped.get(reason, 0) + n

    def filtered(self, name: str, n: int = 1) -> None:
        """Counts ``n`` documents dropped by the filter ``name``."""
        if n:
            self.documents_filtered[name] = self.documents_filtered.get(name, 0) + n

    def add(self, other: "SourceStats | dict") -> None:
        """Adds another stats object (or its ``to_dict()``) into this one."""
        d = other if isinstance(other, dict) else other.to_dict()
        for key in ("documents_read", "documents_kept", "tokens", "chunks", "tokens_dropped"):
            setattr(self, key, getattr(self, key) + d.get(key, 0))
        for key in ("documents_filtered", "records_skipped"):
            mine = getattr(self, key)
            for k, v in d.get(key, {}).items():
                mine[k] = mine.get(k, 0) + v

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return {"documents_read": self.documents_read, "documents_kept": self.documents_kept,
                "documents_filtered": dict(self.documents_filtered),
                "records_skipped": dict(self.records_skipped), "tokens": self.tokens,
                "chunks": self.chunks, "tokens_dropped": self.tokens_dropped}

    @classmethod
    def from_dict(cls, d: dict) -> "SourceStats":
        """Inverse of :meth:`to_dict`."""
        s = cls()
        s.add(d)
        return s

    def pop(self) -> dict:
        """Returns :meth:`to_dict` and resets the counters in place (readers keep this object)."""
        d = self.to_dict()
        self.__init__()
        return d

    def empty(self) -> bool:
        """True when nothing has been counted."""
        return not (self.documents_read or self.records_skipped or self.documents_filtered)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How records of one source become documents.

    ``text_field``: key (JSON) or column (parquet) holding the text;
    ``pile_sets``: for ``pile``, keep only records whose ``meta.pile_set_name`` is
    listed (empty: keep all); ``text_documents``: for ``text``, ``"file"`` (one
    document per file) or ``"line"`` (one per non-empty line); ``quality_field``: dotted
    path of a numeric quality score in JSON records (e.g. ``metadata.score``) and
    ``min_quality``: drop documents scoring below it (counted as filtered
    ``below_quality``; a record without the score counts as below).
    """

    format: str
    text_field: str | None = None
    pile_sets: tuple = ()
    text_documents: str = "file"
    quality_field: str | None = None
    min_quality: float | None = None

    @property
    def field(self) -> str | None:
        return self.text_field or DEFAULT_TEXT_FIELD[self.format]


# --------------------------------------------------------------------------- files


def expand_paths(patterns, base_dir: str | None = None) -> list[str]:
    """Expands a list of globs (local or cloud) into a sorted list of existing files.

    Relative patterns are taken relative to ``base_dir``. Remote patterns are listed once
    per process (``elmjax.storage.list_files``). Raises ``FileNotFoundError`` naming the
    pattern when one matches nothing.
    """
    out = []
    for pattern in patterns:
        p = str(pattern)
        if base_dir is not None and "://" not in p and not p.startswith("/"):
            p = str(epath.Path(base_dir) / p)
        matches = storage.list_files(p)
        if not matches:
            raise FileNotFoundError(f"no file matches {pattern!r} (looked for {p})")
        out.extend(matches)
    return sorted(dict.fromkeys(out))


def assign_part(shards: list[str], index: int, count: int,
                record_offset: int = 0, record_stride: int = 1):
    """Divides a host's (or worker's) share of a source among ``count`` parts.

    Takes the shards and the record striding already applied (``record_offset``,
    ``record_stride``); returns ``(shards, record_offset, record_stride)`` for part
    ``index``. Whole shards are divided when there are at least ``count`` of them
    (and no striding yet); otherwise every part reads every shard and keeps the
    records ``r`` with ``r % stride == offset`` (the pipeline adds the shard's place in
    the list to ``offset``, so that parts beyond a small shard's record count still get
    records of the others). Either way the parts are disjoint and together cover the
    input.
    """
    if count == 1:
        return list(shards), record_offset, record_stride
    if record_stride == 1 and len(shards) >= count:
        return list(shards[index::count]), 0, 1
    return list(shards), record_offset + index * record_stride, record_stride * count


# --------------------------------------------------------------------------- records


def _text_of(obj: Any, opts: ReadOptions, stats: SourceStats) -> str | None:
    if not isinstance(obj, dict):
        stats.skip("not_an_object")
        return None
    if opts.pile_sets:
        meta = obj.get("meta")
        name = meta.get("pile_set_name") if isinstance(meta, dict) else None
        if name not in opts.pile_sets:
            stats.skip("excluded_set")
            return None
    text = _check_text(obj.get(opts.field), stats)
    if text is not None and opts.quality_field and opts.min_quality is not None:
        score = _dotted(obj, opts.quality_field)
        if not isinstance(score, (int, float)) or score < opts.min_quality:
            stats.documents_read += 1  # it parsed into a document; the filter dropped it
            stats.filtered("below_quality")
            return None
    return text


def _dotted(obj: Any, path: str) -> Any:
    """``obj["a"]["b"]`` for ``"a.b"``; None where the path does not exist."""
    for key in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _check_text(text: Any, stats: SourceStats) -> str | None:
    if text is None:
        stats.skip("missing_text")
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            stats.skip("invalid_utf8")
            return None
    if not isinstance(text, str):
        stats.skip("text_not_string")
        return None
    if not text.strip():
        stats.skip("empty_text")
        return None
    try:  # JSON escapes can smuggle in lone surrogates, which no tokenizer accepts.
        text.encode("utf-8")
    except UnicodeEncodeError:
        stats.skip("invalid_utf8")
        return None
    return text


def _jsonl_records(f, opts, stats, start, offset, stride, count_errors):
    for i, line in enumerate(streams.decoded_lines(f, stats, count_errors)):
        if i < start or i % stride != offset:
            continue
        if not line.strip():
            continue  # blank lines are separators, not records
        try:
            s = line.decode("utf-8-sig" if i == 0 else "utf-8")  # a leading BOM is not text
        except UnicodeDecodeError:
            stats.skip("invalid_utf8")
            continue
        try:
            obj = json.loads(s)
        except ValueError:
            stats.skip("invalid_json")
            continue
        text = _text_of(obj, opts, stats)
        if text is not None:
            yield i, text


def _part_count(lo: int, hi: int, offset: int, stride: int) -> int:
    """How many record indices ``i`` in ``[lo, hi)`` have ``i % stride == offset``."""
    def below(x):  # indices in [0, x) of this part
        return max(0, (x - offset + stride - 1) // stride)
    return below(hi) - below(lo) if hi > lo else 0


def _as_bytes(column):
    """A parquet text column as raw values: ``string`` -> ``binary`` (no UTF-8 check), so
    one bad value costs one record; dictionary columns are decoded first. Other types
    are left as they are (their values are then counted as ``text_not_string``)."""
    import pyarrow as pa

    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    for is_text, raw in ((pa.types.is_string, pa.binary()),
                         (pa.types.is_large_string, pa.large_binary()),
                         (getattr(pa.types, "is_string_view", lambda _: False),
                          getattr(pa, "binary_view", pa.binary)())):
        if is_text(t):
            return column.cast(raw)
    return column


_warned_missing: set = set()


def _parquet_records(f, opts, stats, start, offset, stride, count_errors, path=""):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError):
        if count_errors:
            stats.skip("invalid_parquet")
        return
    total = pf.metadata.num_rows
    if opts.field not in names:
        # The whole file is skipped: every one of its rows counts as missing its text.
        stats.skip("missing_text", _part_count(start, total, offset, stride))
        if count_errors and path not in _warned_missing:
            _warned_missing.add(path)
            log.warning("%s: no column %r (columns: %s); the whole file is skipped and its "
                        "rows counted as missing_text. Set text_field for this source in the "
                        "mixture if the text is in another column.", path, opts.field, names)
        return
    first = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        lo, first = max(first, start), first + n
        if first <= start:  # resume: skip whole row groups without reading them
            continue
        try:
            column = _as_bytes(pf.read_row_group(g, columns=[opts.field]).column(0)).to_pylist()
        except (pa.ArrowException, OSError):
            stats.skip("invalid_row_group", _part_count(lo, first, offset, stride))
            continue
        for j, value in enumerate(column):
            i = first - n + j
            if i < start or i % stride != offset:
                continue
            text = _check_text(value, stats)
            if text is not None:
                yield i, text


def _text_records(f, opts, stats, start, offset, stride, count_errors):
    if opts.text_documents == "line":
        lines = (line for line in streams.decoded_lines(f, stats, count_errors) if line.strip())
    else:
        lines = iter([b"".join(streams.raw_chunks(f))])
    for i, raw in enumerate(lines):
        if i < start or i % stride != offset:
            continue
        text = _check_text(raw, stats)
        if text is not None:
            yield i, text


def read_shard(path: str, opts: ReadOptions, stats: SourceStats, start: int = 0,
               record_offset: int = 0, record_stride: int = 1) -> Iterator[tuple[int, str]]:
    """Streams the documents of one shard.

    Takes the shard's path, the source's :class:`ReadOptions`, the ``stats`` to
    count skipped records in, the first record to read (``start``, for resuming)
    and the striding (keep record ``r`` when ``r % record_stride == record_offset``).
    Yields ``(record_index, text)`` for every good record; ``record_index`` counts
    raw records (lines, rows, files) so ``record_index + 1`` is where to resume.
    Shard-level problems (empty file, truncated stream, broken parquet) are
    counted only by the part with ``record_offset == 0``, so counts over all parts
    add up.
    """
    count_errors = record_offset == 0
    try:
        f = storage.open_shard(path)
    except FileNotFoundError:
        raise
    except OSError:
        if count_errors:
            stats.skip("unreadable_file")
        return
    with f:
        head = f.read(4)
        if not head:
            if count_errors:
                stats.skip("empty_file")
            return
        f.seek(0)
        if head == b"PAR1":
            reader = functools.partial(_parquet_records, path=str(path))
        elif opts.format == "text":
            reader = _text_records
        elif opts.format == "refinedweb":
            if count_errors:
                stats.skip("invalid_parquet")
            return
        else:
            reader = _jsonl_records
        try:
            yield from reader(f, opts, stats, start, record_offset, record_stride, count_errors)
        except OSError:
            if count_errors:
                stats.skip("unreadable_file")


def open_tfds(name: str, split: str, data_dir: str | None):
    """Opens a tensorflow-datasets ``array_record`` dataset for random access.

    Takes the dataset name, split and data directory; returns the data source
    (``len`` and ``__getitem__`` -> a dict of features). No TensorFlow needed.
    """
    import tensorflow_datasets as tfds

    return tfds.data_source(name, split=split, data_dir=data_dir)
