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
``28 b5 2f fd``), so a file's name never has to be right. Every gzip member and
every zstd frame is read; a stream that stops inside a member or frame is
reported as truncated (Python's readers either raise or, for zstd, stop
silently, so the frames are walked here by hand).

Bad input never raises: it is counted in a :class:`SourceStats` under one of
:data:`SKIP_REASONS` and the reader goes on. ``tfds`` sources (random access)
are read by the pipeline through :func:`open_tfds`.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any, Iterator

from etils import epath

from elmjax import storage

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
    "invalid_parquet",   # no footer / not a parquet file
    "empty_file",        # a zero-byte shard
    "unreadable_file",   # an I/O error while reading the shard
    "excluded_set",      # pile: pile_set_name not in the kept list
)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


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
    records ``r`` with ``r % stride == offset``. Either way the parts are disjoint
    and together cover the input.
    """
    if count == 1:
        return list(shards), record_offset, record_stride
    if record_stride == 1 and len(shards) >= count:
        return list(shards[index::count]), 0, 1
    return list(shards), record_offset + index * record_stride, record_stride * count


# --------------------------------------------------------------------------- decompression


class _Truncated(Exception):
    pass


def _raw_chunks(f) -> Iterator[bytes]:
    while True:
        b = f.read(_CHUNK)
        if not b:
            return
        yield b


def _frames(chunks: Iterator[bytes], new_decoder, zero_padding_ok: bool) -> Iterator[bytes]:
    """Decompresses a stream of concatenated members/frames, each with a fresh decoder
    (``new_decoder()``: an object with ``decompress``, ``eof``, ``unused_data``).

    Raises _Truncated when the stream ends inside a member (some decoders stop silently at
    a cut frame). ``zero_padding_ok``: trailing zero bytes after the last member are legal
    (gzip).
    """
    d = new_decoder()
    started = False
    for data in chunks:
        while data:
            out = d.decompress(data)
            started = True
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = new_decoder()
                started = False
                if zero_padding_ok and data and not data.strip(b"\x00"):
                    data = b""
            else:
                data = b""
    if started:
        tail = d.flush()
        if tail:
            yield tail
        raise _Truncated()


def _gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Every member of a (multi-member) gzip stream; raises _Truncated on a cut member."""
    return _frames(chunks, lambda: zlib.decompressobj(31), zero_padding_ok=True)


def _zstd_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Every frame of a (multi-frame) zstd stream; raises _Truncated on a cut frame."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    return _frames(chunks, dctx.decompressobj, zero_padding_ok=False)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Splits a byte stream into lines; an unterminated last line is yielded too."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _decoded_lines(f, stats: SourceStats, count_errors: bool) -> Iterator[bytes]:
    """Lines of a plain, gzip or zstd file (detected by magic bytes).

    On a truncated stream the cut (unterminated) last line is dropped and the
    truncation is counted once (by the part with ``count_errors``).
    """
    head = f.read(4)
    chunks = _raw_chunks(f)

    def with_head():
        yield head
        yield from chunks

    if head[:2] == _GZIP_MAGIC:
        kind, decoded = "truncated_gzip", _gzip_chunks(with_head())
    elif head == _ZSTD_MAGIC:
        kind, decoded = "truncated_zstd", _zstd_chunks(with_head())
    else:
        yield from _lines(with_head())
        return
    rest = b""
    try:
        for chunk in decoded:
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            yield from parts
    except (_Truncated, zlib.error):
        if count_errors:
            stats.skip(kind)
        return
    if rest:
        yield rest


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
    for i, line in enumerate(_decoded_lines(f, stats, count_errors)):
        if i < start or i % stride != offset:
            continue
        if not line.strip():
            continue  # blank lines are separators, not records
        try:
            s = line.decode("utf-8")
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


def _parquet_records(f, opts, stats, start, offset, stride, count_errors):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError):
        if count_errors:
            stats.skip("invalid_parquet")
        return
    if opts.field not in pf.schema_arrow.names:
        raise ValueError(f"parquet shard has no column {opts.field!r} "
                         f"(columns: {pf.schema_arrow.names}); set text_field in the mixture")
    first = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if first + n <= start:  # resume: skip whole row groups without reading them
            first += n
            continue
        try:
            column = pf.read_row_group(g, columns=[opts.field]).column(0).to_pylist()
        except (pa.ArrowInvalid, OSError):
            if count_errors:
                stats.skip("invalid_parquet")
            return
        for j, value in enumerate(column):
            i = first + j
            if i < start or i % stride != offset:
                continue
            text = _check_text(value, stats)
            if text is not None:
                yield i, text
        first += n


def _text_records(f, opts, stats, start, offset, stride, count_errors):
    if opts.text_documents == "line":
        lines = (line for line in _decoded_lines(f, stats, count_errors) if line.strip())
    else:
        lines = iter([b"".join(_raw_chunks(f))])
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
            reader = _parquet_records
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
