"""Small dirty shards in every native format, written by the tests, with their expected counts."""

import gzip
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

LONG = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief. ")


def doc(i: int, repeats: int = 6) -> str:
    """A distinct document long enough for the paper's filters (>200 chars, >256 tokens at x6)."""
    return f"Document number {i}. " + LONG * repeats


def jsonl_bytes(texts, extra=None) -> bytes:
    lines = [json.dumps({"text": t, **(extra or {})}) for t in texts]
    return ("\n".join(lines) + "\n").encode()


DIRTY_LINES = [
    b'{"text": "unterminated',                # invalid_json
    b'{"text": "caf\xe9 latin-1 bytes"}',      # invalid_utf8
    b'[1, 2, 3]',                              # not_an_object
    b'{"meta": {}}',                           # missing_text
    b'{"text": null}',                         # missing_text
    b'{"text": ""}',                           # empty_text
    b'{"text": "   \\n "}',                    # empty_text
    b'{"text": 42}',                           # text_not_string
    b'{"text": "lone \\ud800 surrogate"}',     # invalid_utf8
    b'',                                       # blank line: a separator, not a record
]
DIRTY_COUNTS = {"invalid_json": 1, "invalid_utf8": 2, "not_an_object": 1, "missing_text": 2,
                "empty_text": 2, "text_not_string": 1}


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def gzip_members(*parts: bytes) -> bytes:
    out = io.BytesIO()
    for p in parts:
        out.write(gzip.compress(p, mtime=0))
    return out.getvalue()


def zstd_frames(*parts: bytes) -> bytes:
    return b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)


def parquet_bytes(columns: dict, row_group_size: int = 4) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, row_group_size=row_group_size)
    return buf.getvalue()
