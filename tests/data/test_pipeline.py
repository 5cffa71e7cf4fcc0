"""The grain pipeline: exact counts, filters, lossless packing, host shards, mixing, exact resume."""

import collections
import json
import os

import grain
import numpy as np
import pytest
import sentencepiece as spm
import yaml

from data_fixtures import (DIRTY_COUNTS, DIRTY_LINES, doc, gzip_members, jsonl_bytes, parquet_bytes, write,
                           zstd_frames)
from elmjax.data import pipeline
from elmjax.presets import base_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(REPO, "data_mixtures", "samples", "tokenizer.model")
SHORT = "Too short."  # under 200 processed characters
MEDIUM = "word " * 60  # over 200 characters, well under 256 tokens


def web_texts():
    return [doc(i, 8 + i % 9) for i in range(14)] + [SHORT, MEDIUM]


def book_texts():
    return [doc(100 + i, 9 + i % 7) for i in range(11)] + [MEDIUM, SHORT]


@pytest.fixture
def corpus(tmp_path):
    """Two sources over five shards, with dirty records; returns (mixture path, texts per source)."""
    web, books = web_texts(), book_texts()
    write(tmp_path / "web" / "a.parquet", parquet_bytes({"content": web[:9] + [None]}))
    write(tmp_path / "web" / "b.parquet", parquet_bytes({"content": web[9:]}))
    write(tmp_path / "web" / "c.parquet", b"")  # zero-byte shard
    dirty = b"\n".join(DIRTY_LINES) + b"\n"
    write(tmp_path / "books" / "a.jsonl.zst", zstd_frames(jsonl_bytes(books[:5]), dirty))
    write(tmp_path / "books" / "b.json.gz", gzip_members(jsonl_bytes(books[5:])))
    mix = {"sources": [
        {"name": "web", "format": "refinedweb", "paths": ["web/*.parquet"], "weight": 3},
        {"name": "books", "format": "redpajama", "paths": ["books/*"], "weight": 1}]}
    path = write(tmp_path / "mix.yaml", yaml.safe_dump(mix).encode())
    return path, {"web": web, "books": books}


def make_cfg(**data):
    c = base_config()
    c.model.vocab_size = 4096
    c.data.tokenizer = TOKENIZER
    c.data.seq_len = 32
    c.data.shuffle_buffer = 5
    c.data.pack_rows = 8
    c.data.mix_block_tokens = 64
    c.data.prefetch = 0
    c.train.global_batch_size = 4
    c.data.update(data)
    return c


def expected_tokens(texts, min_chars=200, min_tokens=256):
    """Token lists of the documents the paper's filters keep, from SentencePiece directly."""
    sp = spm.SentencePieceProcessor(model_file=TOKENIZER)
    out = []
    for t in texts:
        processed = " ".join("".join(ch for ch in t.lower() if ch.isalnum() or ch.isspace()).split())
        if len(processed) < min_chars:
            continue
        ids = [1] + sp.encode(t) + [2]
        if len(ids) >= min_tokens:
            out.append(ids)
    return out


def pairs_of(batches):
    """Multiset of (input, target) pairs where the loss counts, checking row structure on the way."""
    c = collections.Counter()
    for b in batches:
        for row in range(b["inputs"].shape[0]):
            seg, pos, mask = b["segment_ids"][row], b["positions"][row], b["loss_mask"][row]
            assert np.array_equal(mask, (seg > 0).astype(np.float32))
            # segments are 1, 2, ... laid out contiguously, then padding
            used = seg[seg > 0]
            if not len(used):  # an all-padding row (the last batch of a pass)
                continue
            assert np.array_equal(used, np.sort(used)) and np.array_equal(np.unique(used),
                                                                          np.arange(1, used.max() + 1))
            for s in np.unique(used):
                idx = np.flatnonzero(seg == s)
                assert np.array_equal(pos[idx], np.arange(len(idx)))
                ins, tgs = b["inputs"][row, idx], b["targets"][row, idx]
                assert np.array_equal(ins[1:], tgs[:-1])  # targets are the next inputs
                c.update(zip(ins.tolist(), tgs.tolist()))
    return c


def doc_pairs(token_lists):
    c = collections.Counter()
    for ids in token_lists:
        c.update(zip(ids[:-1], ids[1:]))
    return c


def one_pass(cfg, mix, **kw):
    it = pipeline.make_dataset(cfg, mix, one_pass=True, **kw).__iter__()
    batches = list(it)
    return batches, pipeline.source_stats(it)


def test_one_pass_counts_filters_and_lossless_packing(corpus):
    mix, texts = corpus
    batches, stats = one_pass(make_cfg(), mix, process_index=0, process_count=1)
    for name in ("web", "books"):
        kept = expected_tokens(texts[name])
        s = stats[name]
        assert s["documents_read"] == len(texts[name])
        assert s["documents_kept"] == len(kept)
        assert s["documents_filtered"] == {"too_few_chars": 1, "too_few_tokens": 1}
        assert s["tokens"] == sum(len(k) for k in kept)
        assert s["tokens_packed"] == s["tokens"] - len(kept)  # every input, none dropped
    assert stats["web"]["records_skipped"] == {"missing_text": 1, "empty_file": 1}
    assert stats["books"]["records_skipped"] == DIRTY_COUNTS
    for b in batches:
        assert {k: (v.shape, v.dtype) for k, v in b.items()} == {
            "inputs": ((4, 32), np.int32), "targets": ((4, 32), np.int32),
            "segment_ids": ((4, 32), np.int32), "positions": ((4, 32), np.int32),
            "loss_mask": ((4, 32), np.float32)}
    kept = expected_tokens(texts["web"]) + expected_tokens(texts["books"])
    assert pairs_of(batches) == doc_pairs(kept)


def test_filters_off_and_truncate_policy(corpus):
    mix, texts = corpus
    _, stats = one_pass(make_cfg(min_chars=0, min_tokens=0, long_doc_policy="truncate"), mix,
                        process_index=0, process_count=1)
    for name in ("web", "books"):
        kept = expected_tokens(texts[name], 0, 0)
        assert stats[name]["documents_kept"] == len(texts[name]) == len(kept)
        assert stats[name]["tokens_packed"] == sum(min(len(k) - 1, 32) for k in kept)
        assert stats[name]["tokens_dropped"] == sum(max(len(k) - 1 - 32, 0) for k in kept)


@pytest.mark.parametrize("hosts", [2, 3])
def test_host_shards_are_disjoint_and_covering(corpus, hosts):
    mix, texts = corpus
    cfg = make_cfg()
    cfg.train.global_batch_size = 12
    total, stats_sum = collections.Counter(), collections.Counter()
    for h in range(hosts):
        batches, stats = one_pass(cfg, mix, process_index=h, process_count=hosts)
        assert all(b["inputs"].shape == (12 // hosts, 32) for b in batches)
        total += pairs_of(batches)
        for name, s in stats.items():
            stats_sum[name, "read"] += s["documents_read"]
            stats_sum[name, "skipped"] += sum(s["records_skipped"].values())
    assert total == doc_pairs(expected_tokens(texts["web"]) + expected_tokens(texts["books"]))
    assert stats_sum["web", "read"] == len(texts["web"])
    assert stats_sum["books", "read"] == len(texts["books"])
    assert stats_sum["web", "skipped"] == 2 and stats_sum["books", "skipped"] == sum(DIRTY_COUNTS.values())


def test_realised_proportions_follow_weights(corpus):
    mix, _ = corpus
    cfg = make_cfg()
    it = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    for _ in range(60):
        next(it)
    packed = {n: s["tokens_packed"] for n, s in pipeline.source_stats(it).items()}
    total = sum(packed.values())
    # The mixer keeps every source within one block (<= block + one piece) of its share.
    tol = (cfg.data.mix_block_tokens + cfg.data.seq_len) / total
    assert abs(packed["web"] / total - 0.75) <= tol
    assert abs(packed["books"] / total - 0.25) <= tol
    assert total > 20 * (cfg.data.mix_block_tokens + cfg.data.seq_len)  # the check has teeth


@pytest.mark.parametrize("prefetch", [0, 2])
def test_restore_in_fresh_pipeline_yields_identical_batches(corpus, prefetch):
    mix, _ = corpus
    cfg = make_cfg(prefetch=prefetch)
    it = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    assert isinstance(it, grain.DatasetIterator)
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(9)]  # crosses rounds, windows and epochs
    fresh = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    fresh.set_state(state)
    got = [next(fresh) for _ in range(9)]
    for a, b in zip(expected, got):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    if not prefetch:
        assert pipeline.source_stats(fresh) == pipeline.source_stats(it)
    # Same seed, same stream; another seed, another stream.
    again = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    first = [next(again)["inputs"] for _ in range(3)]
    cfg.train.seed = 1
    other = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    assert not all(np.array_equal(a, next(other)["inputs"]) for a in first)
    for i in (it, fresh, again, other):
        i.close()


def test_startup_errors_name_the_problem(corpus, tmp_path):
    mix, _ = corpus
    with pytest.raises(FileNotFoundError, match="nope"):
        pipeline.make_train_iterator(make_cfg(), str(tmp_path / "nope.yaml"), 0, 1)
    bad = write(tmp_path / "bad.yaml", b"sources:\n  - {name: a, format: csv, paths: [x], weight: 1}\n")
    with pytest.raises(ValueError, match="'format' must be one of"):
        pipeline.make_train_iterator(make_cfg(), bad, 0, 1)
    missing = write(tmp_path / "missing.yaml",
                    b"sources:\n  - {name: a, format: jsonl, paths: [none/*.jsonl], weight: 1}\n")
    with pytest.raises(FileNotFoundError, match=r"none/\*.jsonl"):
        pipeline.make_train_iterator(make_cfg(), missing, 0, 1)
    cfg = make_cfg()
    cfg.model.vocab_size = 1000
    with pytest.raises(ValueError, match="model.vocab_size"):
        pipeline.make_train_iterator(cfg, mix, 0, 1)
    # A source whose every record is bad stops the run instead of spinning forever.
    write(tmp_path / "junk" / "a.jsonl", b"\n".join(DIRTY_LINES))
    junk = write(tmp_path / "junk.yaml",
                 b"sources:\n  - {name: junk, format: jsonl, paths: [junk/*.jsonl], weight: 1}\n")
    with pytest.raises(ValueError, match="kept no document"):
        next(pipeline.make_train_iterator(make_cfg(), junk, 0, 1))


def test_worker_processes_are_deterministic_and_resume(corpus):
    mix, texts = corpus
    cfg = make_cfg(num_workers=2, prefetch=0)
    it = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(4)]
    it.close()
    fresh = pipeline.make_train_iterator(cfg, mix, process_index=0, process_count=1)
    fresh.set_state(state)
    for a in expected:
        b = next(fresh)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    fresh.close()
