"""Paths are resolved once, when a config is loaded: train -> export -> eval work from a working
directory other than the one the config's relative paths are written against."""

import json

from elmjax import checkpoint, cli, config, storage
from tests.train.conftest import ROOT

CONFIG = '''
from tests.train.conftest import tiny_run_config

def get_config(arg=None):
    cfg = tiny_run_config(steps=2, every=2)
    # Relative to the repository, not to where the commands run.
    cfg.data.mixture = "data_mixtures/quickstart.yaml"
    cfg.data.tokenizer = "data_mixtures/samples/tokenizer.model"
    cfg.eval.every = 2
    cfg.eval.perplexity = "data_mixtures/samples/jsonl/poems.jsonl"
    cfg.eval.perplexity_docs = 2
    return cfg
'''


def test_resolve_prefers_the_working_directory_then_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data_mixtures").mkdir()
    (tmp_path / "data_mixtures" / "quickstart.yaml").write_text("sources: []\n")
    assert storage.resolve("data_mixtures/quickstart.yaml") == str(tmp_path / "data_mixtures" / "quickstart.yaml")
    assert storage.resolve("data_mixtures/samples/tokenizer.model") == str(
        ROOT / "data_mixtures" / "samples" / "tokenizer.model")
    assert storage.resolve("data_mixtures/samples/jsonl/*.jsonl") == str(
        ROOT / "data_mixtures" / "samples" / "jsonl" / "*.jsonl")
    assert storage.resolve("missing.txt") == str(tmp_path / "missing.txt")
    assert storage.resolve("gs://bucket/a/b.yaml") == "gs://bucket/a/b.yaml"
    assert storage.output_path("runs/x") == str(tmp_path / "runs" / "x")


def test_train_export_eval_from_another_directory(tmp_path, monkeypatch):
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "run_config.py").write_text(CONFIG)
    monkeypatch.chdir(work)
    cfg = config.load("run_config.py")
    assert cfg.data.tokenizer == str(ROOT / "data_mixtures" / "samples" / "tokenizer.model")
    assert config.resolve_paths(cfg).to_dict() == cfg.to_dict()  # idempotent

    assert cli.main(["train", "--config", "run_config.py", "--workdir", "run"]) == 0
    meta = checkpoint.Checkpointer(work / "run", cfg).read_meta(2)
    assert meta["tokenizer_sha256"] == checkpoint.file_sha256(cfg.data.tokenizer)
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_ppl/poems.jsonl" in r for r in rows)  # eval.every found its file

    assert cli.main(["export", "--workdir", "run", "--out", "hf"]) == 0
    assert (work / "hf" / "tokenizer.model").read_bytes() == (
        ROOT / "data_mixtures" / "samples" / "tokenizer.model").read_bytes()
    assert cli.main(["eval", "--hf", "hf", "--tokenizer", "hf/tokenizer.model",
                     "--perplexity", "data_mixtures/samples/jsonl/poems.jsonl",
                     "--perplexity-docs", "2", "--out", "results.json"]) == 0
    assert json.loads((work / "results.json").read_text())
