"""Multi-host data edge cases, with simulated host counts: more hosts than shards, a host
whose every shard is damaged, and a restart on another number of hosts."""

import collections
import json
import logging

import numpy as np
import pytest
import yaml

from data_fixtures import doc, jsonl_bytes, parquet_bytes, write
from elmjax.data import hosts, pipeline
from elmjax.data.curriculum import TrainData
from test_pipeline import doc_pairs, expected_tokens, make_cfg, one_pass, pairs_of

WEB = [doc(i, 8 + i % 5) for i in range(10)]
BOOKS = [doc(100 + i, 9 + i % 4) for i in range(8)]


@pytest.fixture
def shards(tmp_path):
    """web: 2 parquet shards, the second wholly damaged; books: 2 good JSON-lines shards."""
    write(tmp_path / "web" / "a.parquet", parquet_bytes({"content": WEB}))
    broken = parquet_bytes({"content": WEB})
    write(tmp_path / "web" / "b.parquet", broken[: len(broken) // 2])  # no footer
    write(tmp_path / "books" / "a.jsonl", jsonl_bytes(BOOKS[:4]))
    write(tmp_path / "books" / "b.jsonl", jsonl_bytes(BOOKS[4:]))
    mix = {"sources": [
        {"name": "web", "format": "refinedweb", "paths": ["web/*.parquet"], "weight": 1},
        {"name": "books", "format": "jsonl", "paths": ["books/*.jsonl"], "weight": 1}]}
    return write(tmp_path / "mix.yaml", yaml.safe_dump(mix).encode())


def test_more_hosts_than_shards_divides_records(shards):
    cfg = make_cfg()
    cfg.train.global_batch_size = 10
    total, read = collections.Counter(), collections.Counter()
    for h in range(5):  # 5 hosts, 2 shards per source: records are strided among hosts
        batches, stats = one_pass(cfg, shards, process_index=h, process_count=5)
        total += pairs_of(batches)
        for name, s in stats.items():
            read[name] += s["documents_read"]
            assert s["documents_read"] > 0 or name == "web"
    assert total == doc_pairs(expected_tokens(WEB) + expected_tokens(BOOKS))
    assert read == {"web": len(WEB), "books": len(BOOKS)}


def test_host_with_only_damaged_shards_goes_on_with_the_other_sources(shards, caplog):
    cfg = make_cfg()
    # Host 1 of 2 gets web/b.parquet only: damaged. It trains on books; the counts say why.
    with caplog.at_level(logging.WARNING, logger="elmjax.data"):
        it = pipeline.make_train_iterator(cfg, shards, process_index=1, process_count=2)
        batches = [next(it) for _ in range(12)]
    stats = pipeline.source_stats(it)
    assert stats["web"]["documents_kept"] == 0 and stats["web"]["tokens_packed"] == 0
    assert stats["web"]["records_skipped"] == {"invalid_parquet": 1}
    # Every batch is full of books (packed counts run ahead by the rows being filled).
    assert stats["books"]["tokens_packed"] >= sum(int(b["loss_mask"].sum()) for b in batches) > 0
    warned = [r.getMessage() for r in caplog.records if "kept no document" in r.getMessage()]
    assert len(warned) == 1 and "'web'" in warned[0]
    # Host 0 of 2 has the good web shard and mixes both sources.
    it0 = pipeline.make_train_iterator(cfg, shards, process_index=0, process_count=2)
    for _ in range(12):
        next(it0)
    assert all(s["tokens_packed"] > 0 for s in pipeline.source_stats(it0).values())
    # Its state still round-trips (the ended source included).
    state = json.loads(json.dumps(it.get_state()))
    want = [next(it) for _ in range(3)]
    fresh = pipeline.make_train_iterator(cfg, shards, process_index=1, process_count=2)
    fresh.set_state(state)
    for a, b in zip(want, [next(fresh) for _ in range(3)]):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    for i in (it, it0, fresh):
        i.close()


def test_host_with_no_usable_source_is_a_clear_error(tmp_path):
    write(tmp_path / "web" / "a.parquet", b"PAR1 not really")
    mix = write(tmp_path / "m.yaml", yaml.safe_dump({"sources": [
        {"name": "web", "format": "refinedweb", "paths": ["web/*"], "weight": 1}]}).encode())
    with pytest.raises(ValueError, match="no source of the mixture has a usable document"):
        next(pipeline.make_train_iterator(make_cfg(), mix, 0, 1))


def _save_positions(cfg, data_dir, count, steps):
    """Each of ``count`` simulated hosts reads ``steps`` batches and saves its position the way
    grain's Orbax handler names it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for h in range(count):
        td = TrainData(cfg, process_index=h, process_count=count)
        for s in range(steps):
            td.next_batch(s)
        (data_dir / f"process_{h}-of-{count}.json").write_text(td.get_state().decode())
        td.close()


def test_restart_on_another_host_count(shards, tmp_path):
    cfg = make_cfg(mixture=shards)
    cfg.train.global_batch_size = 12
    data_dir = tmp_path / "ckpt" / "40" / "data"
    _save_positions(cfg, data_dir, count=2, steps=25)
    where = "checkpoint ckpt/40"
    assert hosts.check_host_count(data_dir, 2, False, where) is False
    with pytest.raises(hosts.HostCountError,
                       match=r"ckpt/40 was written by 2 host\(s\) but this run has 3.*"
                             r"data.allow_resplit=true"):
        hosts.check_host_count(data_dir, 3, False, where)
    assert hosts.check_host_count(data_dir, 3, True, where) is True
    positions = hosts.saved_positions(data_dir)
    assert sorted(positions) == [0, 1]
    phase, epoch = hosts.resplit_start(positions)
    # The old hosts' furthest epoch, read straight from their saved reader states.
    furthest = max(s["state"]["epoch"] for text in positions.values()
                   for s in json.loads(text)["iterator"]["parent"]["sources"].values())
    assert epoch == furthest + 1 >= 2  # books (4 docs per host) wrapped around at least once

    def resumed(h):
        td = TrainData(cfg, process_index=h, process_count=3)
        td.resplit(positions)
        out = [td.next_batch(25 + s)["inputs"] for s in range(4)]
        td.close()
        return out

    # Deterministic: the same restart reads the same batches; hosts read different ones.
    first, again, other = resumed(0), resumed(0), resumed(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert first[0].shape == (4, cfg.data.seq_len)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    # Position files from two different host counts side by side are refused.
    (data_dir / "process_2-of-3.json").write_text("{}")
    with pytest.raises(hosts.HostCountError, match=r"\[2, 3\] hosts"):
        hosts.saved_positions(data_dir)


def test_checkpoint_restore_refuses_or_resplits_another_host_count(shards, tmp_path):
    import jax
    import jax.numpy as jnp

    from elmjax import checkpoint

    cfg = make_cfg(mixture=shards)
    state = {"x": jnp.arange(4.0)}
    saver = checkpoint.Checkpointer(tmp_path / "run", cfg)
    data = TrainData(cfg, process_index=0, process_count=1)
    for s in range(5):
        data.next_batch(s)
    saver.save(5, state, data, force=True)
    saver.close()
    data_dir = tmp_path / "run" / "checkpoints" / "5" / "data"
    assert "process_0-of-1.json" in [p.name for p in data_dir.iterdir()]
    # Make it a checkpoint of a 2-host run: each host's position from its own share.
    (data_dir / "process_0-of-1.json").unlink()
    _save_positions(cfg, data_dir, count=2, steps=5)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    shardings = jax.tree.map(lambda _: sharding, state)
    with pytest.raises(hosts.HostCountError, match=r"written by 2 host\(s\) but this run has 1"):
        checkpoint.Checkpointer(tmp_path / "run", cfg).restore_latest(
            abstract, shardings, TrainData(cfg))
    cfg.data.allow_resplit = True
    restorer = checkpoint.Checkpointer(tmp_path / "run", cfg)
    data = TrainData(cfg)
    restored, step = restorer.restore_latest(abstract, shardings, data)
    restorer.close()
    assert step == 5 and np.array_equal(restored["x"], state["x"])
    direct = TrainData(cfg)
    direct.resplit(hosts.saved_positions(data_dir))
    for s in range(5, 8):
        np.testing.assert_array_equal(data.next_batch(s)["inputs"], direct.next_batch(s)["inputs"])
    data.close()
    direct.close()
