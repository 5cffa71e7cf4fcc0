"""Decompressed lines of a shard: plain, gzip or zstd, detected by magic bytes.

Every gzip member and every zstd frame is read; a stream that stops inside a member or
frame is reported as truncated (Python's readers either raise or, for zstd, stop
silently, so the frames are walked here by hand), and damaged compressed bytes as corrupt.
Used by :mod:`elmjax.data.sources`, which counts what is skipped.
"""

from __future__ import annotations

import zlib
from typing import Iterator

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20



class _Truncated(Exception):
    pass


def raw_chunks(f) -> Iterator[bytes]:
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


def lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Splits a byte stream into lines; an unterminated last line is yielded too."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def decoded_lines(f, stats, count_errors: bool) -> Iterator[bytes]:
    """Lines of a plain, gzip or zstd file (detected by magic bytes).

    ``stats`` is a :class:`~elmjax.data.sources.SourceStats` (its ``skip(reason)`` counts
    ``truncated_gzip``/``truncated_zstd``/``corrupt_gzip``/``corrupt_zstd``).
    On a truncated stream the cut (unterminated) last line is dropped and the
    truncation is counted once (by the part with ``count_errors``).
    """
    head = f.read(4)
    chunks = raw_chunks(f)

    def with_head():
        yield head
        yield from chunks

    if head[:2] == GZIP_MAGIC:
        kind, decoded, corrupt = "gzip", _gzip_chunks(with_head()), (zlib.error,)
    elif head == ZSTD_MAGIC:
        import zstandard

        kind, decoded, corrupt = "zstd", _zstd_chunks(with_head()), (zstandard.ZstdError,)
    else:
        yield from lines(with_head())
        return
    rest = b""
    try:
        for chunk in decoded:
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            yield from parts
    except _Truncated:
        if count_errors:
            stats.skip("truncated_" + kind)
        return
    except corrupt:  # bad compressed bytes or checksum: nothing after them can be trusted
        if count_errors:
            stats.skip("corrupt_" + kind)
        return
    if rest:
        yield rest
