"""Object-storage throughput: the same data and checkpoints on local disk, on an S3 server and
on a GCS server, both on this machine (moto's S3 server, fake-gcs-server; the test servers of
``tests/storage/servers.py``). Measured side by side in one run:

- data: ``elmjax data inspect --one-pass`` (read, parse, tokenize, pack) over the quickstart
  sample corpus copied ``--copies`` times, tokens/s; and the raw read of the same shards
  through ``elmjax.storage`` (read-ahead ranged reads), MiB/s;
- checkpoints: a save (until committed) and restore of a ``--mib`` float32 tree through the
  trainer's ``elmjax.checkpoint.Checkpointer`` (Orbax; TensorStore's native GCS and S3
  drivers) in a local, ``gs://`` and ``s3://`` workdir, GiB/s; and the same arrays written and
  read as plain objects through ``elmjax.storage``.

Emulators are not clouds: both servers run on the same 2 cores as the client, over loopback,
keep objects in memory or on local disk, and have no network latency or bandwidth limit; the
figures show elmjax's client overhead, not what a bucket in a data centre delivers.

    python benchmarks/storage_throughput.py --copies 8 --mib 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from elmjax import storage  # noqa: E402
from tests.storage import servers  # noqa: E402
from tests.storage.conftest import make_bucket, upload_tree  # noqa: E402


def make_corpus(directory: str, copies: int) -> str:
    """The quickstart samples copied ``copies`` times under ``directory``; returns the mixture."""
    samples = os.path.join(ROOT, "data_mixtures", "samples")
    for i in range(copies):
        for d, _, files in os.walk(samples):
            for f in files:
                if f.endswith((".py", ".md", ".model", ".vocab")):
                    continue
                rel = os.path.relpath(d, samples)
                os.makedirs(os.path.join(directory, rel), exist_ok=True)
                stem, dot, ext = f.partition(".")
                shutil.copy(os.path.join(d, f), os.path.join(directory, rel, f"{stem}-{i}{dot}{ext}"))
    with open(os.path.join(ROOT, "data_mixtures", "quickstart.yaml")) as f:
        text = f.read().replace("samples/", "")
    path = os.path.join(directory, "mix.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def data_rates(mixture: str) -> tuple[float, float]:
    """(pipeline tokens/s, raw read MiB/s) of one pass over a mixture's shards."""
    from elmjax.config import default_config
    from elmjax.data import mixture as mixture_lib
    from elmjax.data import sources
    from elmjax.data.inspect import inspect_mixture

    shards = [p for s in mixture_lib.load(mixture)
              for p in sources.expand_paths(s.paths, s.base_dir)]  # listed once: sizes known
    t = time.perf_counter()
    storage.prefetch(shards)  # as the pipeline does for the shards it opens next
    nbytes = 0
    for p in shards:
        with storage.open_shard(p) as f:
            nbytes += len(f.read())
    raw = nbytes / 2 ** 20 / (time.perf_counter() - t)
    cfg = default_config()
    cfg.data.tokenizer = os.path.join(ROOT, "data_mixtures", "samples", "tokenizer.model")
    cfg.data.seq_len, cfg.train.global_batch_size = 512, 16
    report = inspect_mixture(cfg, mixture, one_pass=True)
    return report["tokens_per_second"], raw


def orbax_rates(workdir: str, tree) -> tuple[float, float]:
    """(save GiB/s, restore GiB/s) of ``tree`` as the train state of a checkpoint in ``workdir``,
    through the trainer's Checkpointer (save timed until committed)."""
    import jax

    from elmjax import checkpoint
    from elmjax.config import default_config

    gib = sum(x.nbytes for x in tree.values()) / 2 ** 30
    ckpt = checkpoint.Checkpointer(workdir, default_config())
    state = {k: jax.device_put(v) for k, v in tree.items()}
    t = time.perf_counter()
    ckpt.save(1, state, None)
    ckpt.manager.wait_until_finished()
    save = gib / (time.perf_counter() - t)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    t = time.perf_counter()
    restored, _ = ckpt.restore_latest(state, {k: one for k in tree}, None)
    jax.block_until_ready(restored)
    load = gib / (time.perf_counter() - t)
    assert all(np.array_equal(np.asarray(restored[k]), tree[k]) for k in tree)
    return save, load


def object_rates(uri: str, tree) -> tuple[float, float]:
    """(write GiB/s, read GiB/s) of ``tree``'s arrays as one object each through elmjax.storage
    (no Orbax): what the store itself moves for a checkpoint's bytes."""
    gib = sum(x.nbytes for x in tree.values()) / 2 ** 30
    t = time.perf_counter()
    for k, x in tree.items():
        storage.write_bytes(storage.join(uri, k), x.tobytes())
    write = gib / (time.perf_counter() - t)
    t = time.perf_counter()
    back = {k: np.frombuffer(storage.read_bytes(storage.join(uri, k)), np.float32) for k in tree}
    read = gib / (time.perf_counter() - t)
    assert all(np.array_equal(back[k], tree[k]) for k in tree)
    return write, read


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=8, help="copies of the sample corpus")
    ap.add_argument("--mib", type=int, default=256, help="checkpoint size in MiB")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="elmjax-storage-bench-")
    try:
        with servers.object_stores(os.path.join(work, "servers")) as env:
            os.environ.update(env)
            corpus = os.path.join(work, "corpus")
            mixture = make_corpus(corpus, args.copies)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(corpus) for f in fs)
            print(f"data: quickstart samples x{args.copies} = {size / 2 ** 20:.1f} MiB of shards")
            places = {"local": mixture}
            for s in ("s3", "gs"):
                upload_tree(corpus, f"{s}://bench/corpus")
                places[s] = f"{s}://bench/corpus/mix.yaml"
            rates = {k: data_rates(v) for k, v in places.items()}
            for k, (tok, raw) in rates.items():
                print(f"  {k:<6} pipeline {tok:>10,.0f} tokens/s ({tok / rates['local'][0]:.2f}x local)"
                      f"   raw read {raw:>8.1f} MiB/s ({raw / rates['local'][1]:.2f}x local)")
            n = args.mib * 2 ** 20 // 4 // 16
            rng = np.random.default_rng(0)
            tree = {f"w{i}": rng.standard_normal(n, dtype=np.float32) for i in range(16)}
            print(f"checkpoint: {args.mib} MiB float32 in 16 arrays")
            make_bucket("gs://ckpt")
            make_bucket("s3://ckpt")
            orbax = {k: orbax_rates(u, tree) for k, u in (
                ("local", os.path.join(work, "orbax")), ("gs", "gs://ckpt/orbax"),
                ("s3", "s3://ckpt/orbax"))}
            base = orbax["local"]
            for k, (w, r) in orbax.items():
                print(f"  orbax {k:<6} save {w:6.3f} GiB/s ({w / base[0]:.2f}x local)  "
                      f"restore {r:6.3f} GiB/s ({r / base[1]:.2f}x local)")
            raw = {k: object_rates(u, tree) for k, u in (
                ("local", os.path.join(work, "objects")), ("gs", "gs://ckpt/objects"),
                ("s3", "s3://ckpt/objects"))}
            for k, (w, r) in raw.items():
                print(f"  objects {k:<6} write {w:6.3f} GiB/s ({w / raw['local'][0]:.2f}x local)  "
                      f"read {r:6.3f} GiB/s ({r / raw['local'][1]:.2f}x local)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
