"""elmjax.storage against real GCS and S3 servers on 127.0.0.1: listing, read-ahead reads,
writes, and the failures a user meets (missing extra, no bucket, access denied, a dropped
connection: retried, then an error)."""

import os

import numpy as np
import pytest

from elmjax import metrics, storage
from tests.storage import servers
from tests.storage.conftest import make_bucket

SCHEMES = ("gs", "s3")


def test_a_missing_client_library_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gcsfs", "s3fs") else real(name, *a))
    for uri, extra in (("gs://b/x.jsonl", "gcs"), ("s3://b/x.jsonl", "s3")):
        with pytest.raises(storage.StorageError, match=rf"need the '{extra}' extra .*elmjax\[{extra}\]"):
            storage.read_bytes(uri)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_list_read_ahead_and_seek_match_the_bytes_written(stores, scheme, monkeypatch):
    monkeypatch.setattr(storage, "CHUNK_BYTES", 1000)  # many ranges in flight per file
    base = f"{scheme}://rw-{scheme}/dir"
    make_bucket(base)
    blobs = {f"{base}/a/{i}.bin": np.random.default_rng(i).bytes(3500 + 17 * i) for i in range(3)}
    blobs[f"{base}/b/skip.txt"] = b"not matched"
    for path, data in blobs.items():
        storage.write_bytes(path, data)
    found = storage.list_files(f"{base}/**/*.bin")
    assert found == sorted(p for p in blobs if p.endswith(".bin"))
    storage.prefetch(found)
    for path in found:
        assert storage.read_bytes(path) == blobs[path]
        with storage.open_shard(path) as f:
            f.seek(-10, os.SEEK_END)
            assert f.read() == blobs[path][-10:]
            f.seek(1995)
            assert f.read(20) == blobs[path][1995:2015]  # across a range boundary
    assert storage.tree_size(f"{base}/a") == sum(len(blobs[p]) for p in found)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_missing_bucket_is_named(stores, scheme):
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.read_bytes(f"{scheme}://no-such-bucket/x.jsonl")
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.list_files(f"{scheme}://no-such-bucket/shards/*.jsonl")
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.isfile(f"{scheme}://no-such-bucket/mixture.yaml")
    make_bucket(f"{scheme}://a-bucket")
    assert not storage.isfile(f"{scheme}://a-bucket/not-written-yet.yaml")


def test_missing_s3_credentials_name_the_variables(stores, monkeypatch, tmp_path):
    import s3fs

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(storage.StorageError, match="no usable s3:// credentials; set "
                                                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
            storage.read_bytes("s3://any-bucket/x.jsonl")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_metrics_jsonl_events_and_loss_curve_in_a_bucket(stores, scheme):
    workdir = f"{scheme}://runs-{scheme}/m"
    make_bucket(workdir)
    w = metrics.MetricsWriter(workdir)
    for step in (1, 2):
        w.write(step, {"loss": 3.0 - step})
    w.sync()
    assert [r["step"] for r in metrics.read_metrics(workdir)] == [1, 2]
    w.write(3, {"loss": 0.5})
    w.close()
    w = metrics.MetricsWriter(workdir)  # a resumed run appends to what is there
    w.write(4, {"loss": 0.25})
    w.close()
    assert [r["loss"] for r in metrics.read_metrics(workdir)] == [2.0, 1.0, 0.5, 0.25]
    assert storage.read_bytes(metrics.plot_loss(workdir))[:4] == b"\x89PNG"
    events = storage.list_files(f"{workdir}/events.out.tfevents*")
    assert events and all(storage.tree_size(e) > 0 for e in events)


@pytest.fixture()
def proxied_s3(stores, monkeypatch):
    """storage's S3 client pointed at a fault-injecting proxy in front of the moto server."""
    import s3fs

    bucket = "s3://faults"
    make_bucket(bucket)
    data = np.random.default_rng(0).bytes(50_000)
    storage.write_bytes(f"{bucket}/shard.bin", data)
    proxy = servers.FaultProxy(int(stores["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]))
    fs = s3fs.S3FileSystem(endpoint_url=proxy.url, skip_instance_cache=True)
    fs.retries = 1  # s3fs's own retries off: the retries under test are elmjax's
    real = storage.filesystem
    monkeypatch.setattr(storage, "filesystem",
                        lambda p: fs if storage.scheme(p) == "s3" else real(p))
    monkeypatch.setattr(storage, "CHUNK_BYTES", 16_384)
    yield proxy, f"{bucket}/shard.bin", data
    proxy.close()


def test_a_dropped_connection_mid_read_is_retried(proxied_s3):
    proxy, path, data = proxied_s3
    proxy.mode, proxy.drops_left = "drop", 2
    assert storage.read_bytes(path) == data  # every range whole, in order
    assert proxy.dropped == 2


def test_a_connection_that_keeps_dropping_is_an_error_after_the_retries(proxied_s3, monkeypatch):
    proxy, path, _ = proxied_s3
    monkeypatch.setattr(storage, "RETRIES", 2)
    proxy.mode, proxy.drops_left = "drop", 10 ** 6
    with pytest.raises(storage.StorageError, match=r"connection to the s3 server lost .* after 2 tries"):
        storage.read_bytes(path)


def test_access_denied_is_reported_with_the_credential_variables(proxied_s3):
    proxy, path, _ = proxied_s3
    proxy.mode = "deny"
    with pytest.raises(storage.StorageError) as e:
        storage.read_bytes(path)
    message = str(e.value)
    assert "access denied" in message and "AWS_ACCESS_KEY_ID" in message
    assert "testing" not in message  # the credential's value is never shown
