"""Damaged shards cost one record each, never the run: parquet record by record, and the
JSON-lines readers (plain, gzip, zstd) per failure mode listed in docs/data_robustness.md.

Every shard is built here with its damage put in on purpose; the expected counts follow
from how the shard was built, and resume positions are checked against a full read."""

import gzip
import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from data_fixtures import doc, jsonl_bytes, write
from elmjax.data import sources
from elmjax.data.sources import ReadOptions, SourceStats

BAD = b"caf\xc3\x28 invalid continuation byte"  # the byte pair of the RefinedWeb report


def read(path, fmt, start=0, part=(0, 1), **kw):
    """``([(index, text)], records_skipped)`` of one shard."""
    stats = SourceStats()
    got = list(sources.read_shard(path, ReadOptions(fmt, **kw), stats, start, *part))
    return got, stats.records_skipped


def parquet(path, table, row_group_size=4, **kw) -> str:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size, **kw)
    return write(path, buf.getvalue())


def text_column(values, kind):
    """An Arrow column of ``kind`` holding raw byte values (invalid UTF-8 allowed) or None."""
    raw = pa.array([v.encode() if isinstance(v, str) else v for v in values],
                   pa.large_binary() if kind == "large_string" else pa.binary())
    if kind == "string":
        return raw.view(pa.string())  # a string column whose bytes are not checked
    if kind == "large_string":
        return raw.view(pa.large_string())
    return raw


def check_resume(path, fmt, full, **kw):
    """Reading from every resume position gives exactly the suffix of a full read, and the
    record-striding parts are disjoint and cover it."""
    last = full[-1][0] + 1 if full else 0
    for start in range(last + 1):
        got, _ = read(path, fmt, start=start, **kw)
        assert got == [(i, t) for i, t in full if i >= start], start
    parts = [read(path, fmt, part=(k, 3), **kw)[0] for k in range(3)]
    assert sorted(x for p in parts for x in p) == full


# Rows: 12 values in 3 row groups of 4; the damaged ones sit among good ones in each group.
VALUES = [doc(0), BAD, doc(2), None, doc(4), doc(5), b"", doc(7), BAD, doc(9), doc(10), None]
GOOD = [(i, v) for i, v in enumerate(VALUES) if isinstance(v, str)]
EXPECTED_SKIPS = {"invalid_utf8": 2, "missing_text": 2, "empty_text": 1}


@pytest.mark.parametrize("kind", ["string", "large_string", "binary"])
@pytest.mark.parametrize("dictionary", [False, True])
def test_parquet_bad_values_cost_one_record_each(tmp_path, kind, dictionary):
    col = text_column(VALUES, kind)
    if dictionary and kind == "string":  # an Arrow dictionary column (stored as such)
        col = col.dictionary_encode()
    path = parquet(tmp_path / "rw.parquet",
                   pa.table({"content": col, "url": [f"u{i}" for i in range(len(VALUES))]}),
                   use_dictionary=dictionary)
    assert pq.ParquetFile(path).num_row_groups == 3
    got, skipped = read(path, "refinedweb")
    assert got == GOOD
    assert skipped == EXPECTED_SKIPS
    check_resume(path, "refinedweb", GOOD)


def _corrupt_row_group(path, group):
    """Overwrites the first page header of ``group``'s text column chunk with junk bytes."""
    md = pq.ParquetFile(path).metadata.row_group(group).column(0)
    offset = md.dictionary_page_offset or md.data_page_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 12)


@pytest.mark.parametrize("compression", ["none", "snappy"])
def test_parquet_undecodable_row_group_costs_its_rows_only(tmp_path, compression):
    texts = [doc(i) for i in range(12)]
    path = parquet(tmp_path / "rg.parquet", pa.table({"content": texts}), compression=compression)
    _corrupt_row_group(path, 1)
    got, skipped = read(path, "refinedweb")
    good = [(i, t) for i, t in enumerate(texts) if not 4 <= i < 8]
    assert got == good and skipped == {"invalid_row_group": 4}
    check_resume(path, "refinedweb", good)
    # Counts over the record-striding parts add up to the whole file's.
    totals = SourceStats()
    for k in range(3):
        totals.add({"records_skipped": read(path, "refinedweb", part=(k, 3))[1]})
    assert totals.records_skipped == {"invalid_row_group": 4}
    # Resuming inside the damaged group counts only its rows not yet passed.
    assert read(path, "refinedweb", start=6)[1] == {"invalid_row_group": 2}


def test_parquet_without_the_text_column_is_skipped_whole_with_one_warning(tmp_path, caplog):
    path = parquet(tmp_path / "other.parquet",
                   pa.table({"text": [doc(i) for i in range(7)], "url": ["u"] * 7}))
    sources._warned_missing.discard(path)
    with caplog.at_level(logging.WARNING, logger="elmjax.data"):
        assert read(path, "refinedweb") == ([], {"missing_text": 7})
        assert read(path, "refinedweb") == ([], {"missing_text": 7})  # counted every pass
        parts = [read(path, "refinedweb", part=(k, 2))[1] for k in range(2)]
    assert parts == [{"missing_text": 4}, {"missing_text": 3}]
    warnings = [r.getMessage() for r in caplog.records if r.name == "elmjax.data"]
    assert len(warnings) == 1
    assert path in warnings[0] and "'content'" in warnings[0] and "['text', 'url']" in warnings[0]
    # The same file read with the right text_field is fine.
    assert len(read(path, "refinedweb", text_field="text")[0]) == 7


def test_parquet_non_text_column_and_nested_values(tmp_path):
    path = parquet(tmp_path / "n.parquet", pa.table({"content": [1, 2, None]}))
    assert read(path, "refinedweb") == ([], {"text_not_string": 2, "missing_text": 1})
    path = parquet(tmp_path / "l.parquet", pa.table({"content": [["a"], [doc(1)]]}))
    assert read(path, "refinedweb") == ([], {"text_not_string": 2})


def test_parquet_truncated_and_foreign_files(tmp_path):
    whole = io.BytesIO()
    pq.write_table(pa.table({"content": [doc(i) for i in range(8)]}), whole, row_group_size=4)
    data = whole.getvalue()
    assert read(write(tmp_path / "cut.parquet", data[: len(data) // 2]), "refinedweb") == \
        ([], {"invalid_parquet": 1})
    junk_footer = data[:-8] + b"\xff\xff\xff\x7fPAR1"  # a footer length past the file start
    assert read(write(tmp_path / "foot.parquet", junk_footer), "refinedweb") == \
        ([], {"invalid_parquet": 1})
    # refinedweb is parquet only: a JSON-lines file under that format is counted, not parsed.
    assert read(write(tmp_path / "x.parquet", jsonl_bytes([doc(1)])), "refinedweb") == \
        ([], {"invalid_parquet": 1})


# --------------------------------------------------------------------------- JSON lines


def _jsonl_cases():
    texts = [doc(i) for i in range(40)]
    raw = jsonl_bytes(texts)
    cases = {}
    # A UTF-8 byte-order mark before the first record is not part of it.
    cases["bom"] = (b"\xef\xbb\xbf" + raw, texts, {})
    # Windows line ends: the \r is JSON whitespace.
    cases["crlf"] = (raw.replace(b"\n", b"\r\n"), texts, {})
    # No newline after the last record.
    cases["no_final_newline"] = (raw.rstrip(b"\n"), texts, {})
    # A file padded with NUL bytes (a preallocated, partly written file): one bad "line".
    cases["nul_padding"] = (raw + b"\0" * 64, texts, {"invalid_json": 1})
    # A record cut mid-way by a crash of the writer, then a good one after it.
    cut = jsonl_bytes(texts[:3])[:-40] + b"\n" + jsonl_bytes(texts[3:])
    cases["cut_record"] = (cut, texts[:2] + texts[3:], {"invalid_json": 1})
    # Invalid UTF-8 inside a JSON string (latin-1 text) and an escaped lone surrogate.
    bad = jsonl_bytes(texts[:1]) + b'{"text": "' + BAD + b'"}\n' + \
        b'{"text": "x \\udc80 y"}\n' + jsonl_bytes(texts[1:])
    cases["bad_utf8"] = (bad, texts, {"invalid_utf8": 2})
    # A pretty JSON array instead of JSON lines: the brackets and the elements followed by a
    # comma are junk lines; the last element is a whole object on its line and is read.
    arr = b"[\n" + b",\n".join(jsonl_bytes([t]).strip() for t in texts[:3]) + b"\n]\n"
    cases["json_array"] = (arr, texts[2:3], {"invalid_json": 4})
    return cases


@pytest.mark.parametrize("case", sorted(_jsonl_cases()))
@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_jsonl_damage(tmp_path, case, compress):
    raw, texts, skips = _jsonl_cases()[case]
    data = {"plain": raw, "gzip": gzip.compress(raw, mtime=0),
            "zstd": zstandard.ZstdCompressor().compress(raw)}[compress]
    path = write(tmp_path / "shard", data)
    got, skipped = read(path, "jsonl")
    assert [t for _, t in got] == texts and skipped == skips
    check_resume(path, "jsonl", got)


def test_compressed_stream_damage(tmp_path):
    texts = [doc(i) for i in range(200)]
    raw = jsonl_bytes(texts)
    # A damaged gzip CRC: the member's data cannot be trusted.
    g = bytearray(gzip.compress(raw, mtime=0))
    g[-6] ^= 0xFF
    got, skipped = read(write(tmp_path / "crc.gz", bytes(g)), "dolma")
    assert skipped == {"corrupt_gzip": 1}
    assert [t for _, t in got] == texts[: len(got)]
    # Junk after the last gzip member (not the zero padding tape archives add).
    got, skipped = read(write(tmp_path / "junk.gz", gzip.compress(raw) + b"junk"), "dolma")
    assert [t for _, t in got] == texts and skipped == {"corrupt_gzip": 1}
    padded = gzip.compress(raw) + b"\0" * 512
    assert read(write(tmp_path / "pad.gz", padded), "dolma")[1] == {}
    # A damaged zstd frame (bytes or checksum) ends the file; the frames before it are kept.
    first, second = jsonl_bytes(texts[:5]), jsonl_bytes(texts[5:])
    z2 = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(second))
    z2[len(z2) // 2] ^= 0xFF
    data = zstandard.ZstdCompressor().compress(first) + bytes(z2)
    got, skipped = read(write(tmp_path / "bad.zst", data), "pile")
    assert skipped == {"corrupt_zstd": 1}
    assert [t for _, t in got][:5] == texts[:5]
    assert [t for _, t in got] == texts[: len(got)]
    # A zstd checksum that does not match.
    z = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(second))
    z[-1] ^= 0xFF
    got, skipped = read(write(tmp_path / "sum.zst", zstandard.ZstdCompressor().compress(first)
                              + bytes(z)), "pile")
    assert skipped == {"corrupt_zstd": 1} and [t for _, t in got][:5] == texts[:5]


def test_data_inspect_one_pass_reports_every_skip_and_exits_0(tmp_path, capsys):
    import json

    import yaml

    from elmjax import cli

    web = [doc(i) for i in range(12)]
    parquet(tmp_path / "web" / "a.parquet",
            pa.table({"content": text_column(VALUES, "string")}))           # bad values
    rg = parquet(tmp_path / "web" / "b.parquet", pa.table({"content": web}))
    _corrupt_row_group(rg, 2)                                                # 4 rows lost
    parquet(tmp_path / "web" / "c.parquet", pa.table({"text": web[:5]}))    # wrong column
    write(tmp_path / "web" / "d.parquet", b"")
    raw = jsonl_bytes(web[:6])
    g = bytearray(gzip.compress(raw, mtime=0))
    g[-6] ^= 0xFF
    write(tmp_path / "books" / "a.json.gz", bytes(g))
    write(tmp_path / "books" / "b.jsonl", b'{"text": "' + BAD + b'"}\n' + jsonl_bytes(web))
    mix = write(tmp_path / "mix.yaml", yaml.safe_dump({"sources": [
        {"name": "web", "format": "refinedweb", "paths": ["web/*.parquet"], "weight": 1},
        {"name": "books", "format": "dolma", "paths": ["books/*"], "weight": 1}]}).encode())
    rc = cli.main(["data", "inspect", "--mixture", mix, "--one-pass", "--json",
                   "--seq-len", "128", "--batch-size", "4"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)["sources"]
    assert report["web"]["records_skipped"] == {
        **EXPECTED_SKIPS, "missing_text": EXPECTED_SKIPS["missing_text"] + 5,
        "invalid_row_group": 4, "empty_file": 1}
    assert report["web"]["documents_read"] == len(GOOD) + 8
    assert report["books"]["records_skipped"] == {"corrupt_gzip": 1, "invalid_utf8": 1}
    assert report["books"]["documents_read"] == len(web)
