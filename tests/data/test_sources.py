"""Readers: every native format, dirty records counted by reason, compressed streams read whole."""

import gzip

import pytest

from data_fixtures import (DIRTY_COUNTS, DIRTY_LINES, doc, gzip_members, jsonl_bytes,
                           parquet_bytes, write, zstd_frames)
from elmjax.data import sources
from elmjax.data.sources import ReadOptions, SourceStats


def read_all(path, fmt, **kw):
    opts = ReadOptions(format=fmt, **{k: v for k, v in kw.items() if k != "part"})
    stats = SourceStats()
    offset, stride = kw.get("part", (0, 1))
    texts = [t for _, t in sources.read_shard(path, opts, stats, 0, offset, stride)]
    return texts, stats.records_skipped


def dirty_jsonl(texts):
    return jsonl_bytes(texts) + b"\n".join(DIRTY_LINES) + b"\n" + jsonl_bytes(texts[:1])


@pytest.mark.parametrize("fmt", ["redpajama", "jsonl", "pile", "dolma"])
@pytest.mark.parametrize("compress", ["plain", "gzip", "zstd"])
def test_jsonl_formats_count_dirty_records(tmp_path, fmt, compress):
    texts = [doc(i) for i in range(5)]
    raw = dirty_jsonl(texts)
    data = {"plain": raw, "gzip": gzip_members(raw), "zstd": zstd_frames(raw)}[compress]
    # The name says nothing about the compression: magic bytes decide.
    path = write(tmp_path / "shard.data", data)
    got, skipped = read_all(path, fmt)
    assert got == texts + texts[:1]
    assert skipped == DIRTY_COUNTS


def test_multi_member_gzip_and_multi_frame_zstd_read_whole(tmp_path):
    parts = [jsonl_bytes([doc(10 * k + i) for i in range(3)]) for k in range(4)]
    expected = [doc(10 * k + i) for k in range(4) for i in range(3)]
    for name, data in [("a.json.gz", gzip_members(*parts)), ("a.jsonl.zst", zstd_frames(*parts))]:
        got, skipped = read_all(write(tmp_path / name, data), "dolma")
        assert got == expected and skipped == {}, name


def test_truncated_streams_are_counted(tmp_path):
    first, second = jsonl_bytes([doc(1), doc(2)]), jsonl_bytes([doc(3), doc(4)])
    cases = {
        # the second member/frame is cut inside its header: nothing of it can be decoded
        "truncated_gzip": gzip_members(first) + gzip.compress(second)[:8],
        "truncated_zstd": zstd_frames(first) + zstd_frames(second)[:8],
    }
    for reason, data in cases.items():
        got, skipped = read_all(write(tmp_path / reason, data), "jsonl")
        assert got == [doc(1), doc(2)], reason
        assert skipped == {reason: 1}, reason
    # A single frame cut in the middle: some decoders stop silently here.
    whole = zstd_frames(jsonl_bytes([doc(i) for i in range(50)]))
    got, skipped = read_all(write(tmp_path / "cut.zst", whole[: len(whole) // 2]), "jsonl")
    assert skipped == {"truncated_zstd": 1}
    assert got == [doc(i) for i in range(len(got))] and len(got) < 50
    whole = gzip_members(jsonl_bytes([doc(i) for i in range(50)]))
    got, skipped = read_all(write(tmp_path / "cut.gz", whole[: len(whole) // 2]), "jsonl")
    assert skipped == {"truncated_gzip": 1}
    assert got == [doc(i) for i in range(len(got))] and len(got) < 50


def test_parquet_refinedweb_and_broken_files(tmp_path):
    texts = [doc(i) for i in range(9)]
    content = texts[:4] + [None, ""] + texts[4:]
    cols = {"content": content, "url": [f"u{i}" for i in range(len(content))],
            "dump": ["d"] * len(content)}
    path = write(tmp_path / "rw.parquet", parquet_bytes(cols))
    got, skipped = read_all(path, "refinedweb")
    assert got == texts and skipped == {"missing_text": 1, "empty_text": 1}
    # Resuming inside the file skips whole row groups and lands on the right record.
    stats = SourceStats()
    resumed = list(sources.read_shard(path, ReadOptions("refinedweb"), stats, start=7))
    assert [i for i, _ in resumed] == [7, 8, 9, 10] and [t for _, t in resumed] == texts[5:]
    # Pile's deduplicated release: parquet with a text column.
    got, _ = read_all(write(tmp_path / "pile.parquet", parquet_bytes({"text": texts})), "pile")
    assert got == texts
    whole = parquet_bytes(cols)
    no_footer = write(tmp_path / "nofooter.parquet", whole[:-20])
    assert read_all(no_footer, "refinedweb") == ([], {"invalid_parquet": 1})
    empty = write(tmp_path / "empty.parquet", b"")
    assert read_all(empty, "refinedweb") == ([], {"empty_file": 1})
    assert read_all(write(tmp_path / "empty.jsonl", b""), "jsonl") == ([], {"empty_file": 1})


def test_pile_set_names(tmp_path):
    lines = (jsonl_bytes([doc(1)], {"meta": {"pile_set_name": "ArXiv"}})
             + jsonl_bytes([doc(2)], {"meta": {"pile_set_name": "Pile-CC"}})
             + jsonl_bytes([doc(3)], {"meta": {"pile_set_name": "ArXiv"}}))
    path = write(tmp_path / "p.jsonl.zst", zstd_frames(lines))
    assert read_all(path, "pile") == ([doc(1), doc(2), doc(3)], {})
    assert read_all(path, "pile", pile_sets=("ArXiv",)) == ([doc(1), doc(3)], {"excluded_set": 1})


def test_text_documents(tmp_path):
    a = write(tmp_path / "a.txt", doc(1).encode())
    assert read_all(a, "text") == ([doc(1)], {})
    bad = write(tmp_path / "b.txt", b"caf\xe9")
    assert read_all(bad, "text") == ([], {"invalid_utf8": 1})
    lines = write(tmp_path / "c.txt", f"{doc(1)}\n\n{doc(2)}\n".encode())
    assert read_all(lines, "text", text_documents="line") == ([doc(1), doc(2)], {})


def test_record_striding_is_disjoint_and_covering(tmp_path):
    texts = [doc(i) for i in range(23)]
    path = write(tmp_path / "s.jsonl", jsonl_bytes(texts))
    parts = [read_all(path, "jsonl", part=(k, 3))[0] for k in range(3)]
    assert sorted(t for p in parts for t in p) == sorted(texts)
    assert sum(len(p) for p in parts) == len(texts)


@pytest.mark.parametrize("num_shards,hosts,workers", [(8, 2, 2), (3, 2, 2), (1, 4, 1), (5, 2, 3)])
def test_assign_part_disjoint_and_covering(num_shards, hosts, workers):
    records = {f"s{i}": list(range(10 + i)) for i in range(num_shards)}
    seen = []
    for h in range(hosts):
        host = sources.assign_part(sorted(records), h, hosts)
        for w in range(workers):
            shards, offset, stride = sources.assign_part(*host[:1], w, workers, *host[1:])
            seen += [(s, r) for s in shards for r in records[s] if r % stride == offset]
    everything = [(s, r) for s in records for r in records[s]]
    assert sorted(seen) == sorted(everything)


def test_expand_paths_errors(tmp_path):
    write(tmp_path / "x" / "a.jsonl", b"{}")
    write(tmp_path / "x" / "b.jsonl", b"{}")
    assert [p.rsplit("/", 1)[1] for p in sources.expand_paths(["x/*.jsonl"], str(tmp_path))] == \
        ["a.jsonl", "b.jsonl"]
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        sources.expand_paths(["x/nothing.jsonl"], str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\*.parquet"):
        sources.expand_paths(["x/*.parquet"], str(tmp_path))
