"""Data, tokenizer, workdir and exports in buckets on real servers on 127.0.0.1: ``data
inspect`` over dirty remote shards counts what a local read counts; the quickstart trains with
its mixture on s3:// and its workdir on gs://, is SIGKILLed and resumes with the losses of an
uninterrupted local run (and a run with its workdir on s3:// resumes the same way);
``export --out gs://`` then ``eval --hf gs://`` scores like the local export."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from elmjax import cli, metrics, storage
from elmjax.train import loop
from tests.data.data_fixtures import DIRTY_LINES, doc, gzip_members, jsonl_bytes, write
from tests.storage.conftest import ROOT, make_bucket, upload_tree
from tests.train.conftest import tiny_run_config

DIRTY_MIXTURE = """sources:
  - {name: clean, format: jsonl, paths: ["clean/*.jsonl"], weight: 1}
  - {name: dirty, format: jsonl, paths: ["dirty/**/*.gz", "dirty/*.jsonl"], weight: 1}
"""


def _inspect(mixture, capsys):
    assert cli.main(["data", "inspect", "--mixture", mixture, "--one-pass", "--json",
                     "--tokenizer", os.path.join(ROOT, "data_mixtures/samples/tokenizer.model"),
                     "--seq-len", "64", "--batch-size", "4"]) == 0
    return json.loads(capsys.readouterr().out)


def test_data_inspect_over_remote_dirty_shards_counts_like_local(stores, tmp_path, capsys):
    local = tmp_path / "corpus"
    write(str(local / "clean" / "a.jsonl"), jsonl_bytes([doc(i) for i in range(5)]))
    dirty = b"\n".join(DIRTY_LINES[:5]) + b"\n" + jsonl_bytes([doc(9)])
    write(str(local / "dirty" / "x" / "b.jsonl.gz"),
          gzip_members(jsonl_bytes([doc(7)]), dirty)[:-9])  # the last member cut short
    write(str(local / "dirty" / "c.jsonl"), b"\n".join(DIRTY_LINES) + b"\n" + jsonl_bytes([doc(8)]))
    write(str(local / "dirty" / "empty.jsonl"), b"")
    (local / "mix.yaml").write_text(DIRTY_MIXTURE)
    for uri in ("s3://inspect/corpus", "gs://inspect/corpus"):
        upload_tree(str(local), uri)
    want = _inspect(str(local / "mix.yaml"), capsys)
    assert want["sources"]["dirty"]["records_skipped"]["truncated_gzip"] == 1
    for uri in ("s3://inspect/corpus", "gs://inspect/corpus"):
        got = _inspect(f"{uri}/mix.yaml", capsys)
        for key in ("tokens", "batches"):
            assert got[key] == want[key], (uri, key)
        for name in want["sources"]:
            for key in ("documents_read", "documents_kept", "records_skipped", "tokens_packed"):
                assert got["sources"][name][key] == want["sources"][name][key], (uri, name, key)


def test_an_s3_workdir_checkpoints_and_resumes_like_a_local_run(stores, tmp_path):
    """Orbax through TensorStore's S3 driver: a run stopped at step 4 and resumed to 6 logs the
    losses of an uninterrupted local run, and its checkpoints are committed by marker files."""
    reference = tmp_path / "local"
    loop.train(tiny_run_config(steps=6, every=2), str(reference))
    workdir = "s3://runs/tiny"
    make_bucket(workdir)
    first = tiny_run_config(steps=6, every=2)
    first.train.steps = 4  # the same schedule (decay over 6), stopped at step 4
    loop.train(first, workdir)
    assert storage.isfile(f"{workdir}/checkpoints/4/commit_success.txt")
    loop.train(tiny_run_config(steps=6, every=2), workdir)
    assert _losses(workdir) == _losses(str(reference))  # bitwise, float32 on CPU
    assert storage.list_files(f"{workdir}/checkpoints/6/state/**")


@pytest.mark.parametrize("scheme", ("gs", "s3"))
def test_a_workdir_in_a_missing_bucket_is_refused_not_created(stores, scheme):
    from elmjax import checkpoint

    with pytest.raises(storage.StorageError, match="bucket 'no-such-runs' does not exist"):
        checkpoint.Checkpointer(f"{scheme}://no-such-runs/x", tiny_run_config())
    assert not storage.filesystem(f"{scheme}://x").exists(f"{scheme}://no-such-runs")


CONFIG = '''
from tests.train.conftest import tiny_run_config

def get_config(arg=None):
    cfg = tiny_run_config(steps=6, every=2)
    cfg.data.mixture = "{data}/quickstart.yaml"
    cfg.data.tokenizer = "{data}/samples/tokenizer.model"
    return cfg
'''


def _spawn(config_path, workdir):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "elmjax.cli", "train", "--config",
                             str(config_path), "--workdir", workdir], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(proc, workdir, step, checkpoint_step, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(r["step"] >= step for r in metrics.read_metrics(workdir)) and storage.exists(
                f"{workdir}/checkpoints/{checkpoint_step}/commit_success.txt"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early:\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"trainer did not reach step {step}")


def _losses(workdir):
    return {r["step"]: r["loss"] for r in metrics.read_metrics(workdir)}


@pytest.mark.slow
def test_bucket_run_killed_and_resumed_matches_local_then_exports_and_evaluates(
        stores, quickstart_data, tmp_path, capsys):
    reference = tmp_path / "local"
    loop.train(tiny_run_config(steps=6, every=3), str(reference))
    config_path = tmp_path / "bucket_config.py"
    config_path.write_text(CONFIG.format(data=quickstart_data))
    workdir = "gs://runs/quickstart"
    make_bucket(workdir)
    proc = _spawn(config_path, workdir)
    _wait_for(proc, workdir, 4, checkpoint_step=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = _spawn(config_path, workdir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "restored step 2" in out or "restored step 4" in out, out
    assert _losses(workdir) == _losses(reference)  # bitwise, float32 on CPU
    assert storage.read_bytes(f"{workdir}/loss.png")[:4] == b"\x89PNG"

    results = {}
    for name, src, out_dir in (("bucket", workdir, "gs://exports/quickstart"),
                               ("local", str(reference), str(tmp_path / "export"))):
        make_bucket("gs://exports")
        assert cli.main(["export", "--workdir", src, "--out", out_dir]) == 0
        assert cli.main(["eval", "--hf", out_dir, "--tokenizer", f"{out_dir}/tokenizer.model",
                         "--perplexity", f"{quickstart_data}/samples/jsonl/poems.jsonl",
                         "--perplexity-docs", "4", "--batch-size", "4",
                         "--out", f"{out_dir}/eval.json"]) == 0
        results[name] = json.loads(storage.read_bytes(f"{out_dir}/eval.json"))["results"]
    capsys.readouterr()
    assert results["bucket"] == results["local"] and results["local"]
