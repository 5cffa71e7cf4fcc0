"""Tokenizer, mixture files, data config validation and the tfds reader."""

import os
import pickle

import pytest
import yaml

from data_fixtures import write
from elmjax import config as config_lib
from elmjax.data import mixture, pipeline, sources
from elmjax.data.tokenizer import Tokenizer, train_tokenizer
from elmjax.presets import base_config
from test_pipeline import TOKENIZER, make_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_tokenizer_layout_and_pickling():
    tok = Tokenizer(TOKENIZER)
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (4096, 1, 2, 3)
    ids = tok.encode_batch(["To be, or not to be: that is the question.", "caf\u00e9"])
    assert ids[0][0] == 1 and ids[0][-1] == 2 and ids[1][0] == 1 and ids[1][-1] == 2
    assert tok.decode(ids[0]) == "To be, or not to be: that is the question."
    # NFC first: a decomposed accent encodes like the composed one.
    assert tok.encode_batch(["cafe\u0301"]) == [ids[1]]
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._sp is None and clone.encode_batch(["x y"]) == tok.encode_batch(["x y"])
    with pytest.raises(FileNotFoundError, match="tokenizer model not found"):
        Tokenizer("/nonexistent/tokenizer.model")


def test_train_tokenizer_llama_layout(tmp_path):
    texts = [f"line {i} of a tiny corpus about {w}" for i, w in
             enumerate(["kings", "queens", "ships", "storms", "fools"] * 40)]
    path = train_tokenizer(texts, str(tmp_path / "t.model"), vocab_size=320)
    tok = Tokenizer(path)
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (320, 1, 2, 3)
    assert tok.decode(tok.encode_batch(["storms of kings"])[0]) == "storms of kings"


def test_mixture_parsing_and_errors(tmp_path):
    specs = mixture.parse({"sources": [
        {"name": "a", "format": "pile", "paths": ["x"], "tokens": 300, "pile_sets": ["ArXiv"]},
        {"name": "b", "format": "dolma", "paths": "y", "tokens": 100}]})
    assert [s.weight for s in specs] == [0.75, 0.25]
    assert specs[0].read_options.pile_sets == ("ArXiv",) and specs[1].paths == ("y",)
    bad = [
        ({"sources": []}, "sources"),
        ({"sources": [{"name": "a", "format": "csv", "paths": ["x"], "weight": 1}]}, "format"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"]}]}, "exactly one"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"], "weight": -1}]}, "positive"),
        ({"sources": [{"name": "a", "format": "jsonl", "weight": 1}]}, "paths"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"], "weight": 1, "colour": 2}]},
         "unknown keys"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"], "weight": 1},
                      {"name": "a", "format": "jsonl", "paths": ["x"], "weight": 1}]}, "unique"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"], "weight": 1},
                      {"name": "b", "format": "jsonl", "paths": ["x"], "tokens": 1}]}, "either"),
        ({"sources": [{"name": "a", "format": "jsonl", "paths": ["x"], "weight": 1,
                       "pile_sets": ["A"]}]}, "pile_sets"),
        ({"sources": [{"name": "a", "format": "tfds", "weight": 1}]}, "tfds_name"),
    ]
    for doc, msg in bad:
        with pytest.raises(mixture.MixtureError, match=msg):
            mixture.parse(doc, where="m.yaml")


def test_shipped_mixtures():
    quick = mixture.load("data_mixtures/quickstart.yaml")
    assert {s.format for s in quick} == {"refinedweb", "pile", "redpajama", "dolma", "jsonl"}
    for s in quick:
        assert sources.expand_paths(s.paths, s.base_dir)
    paper = {s.name: s for s in mixture.load(os.path.join(REPO, "data_mixtures",
                                                          "openelm_pretrain.yaml"))}
    # The paper's table: RefinedWeb 665B, PILE 207B, RedPajama 332B, Dolma 580B tokens.
    total = 665 + 207 + 332 + 580
    groups = {"refinedweb": 665, "pile": 207, "redpajama": 332, "dolma": 580}
    for prefix, tokens in groups.items():
        w = sum(s.weight for n, s in paper.items() if n.startswith(prefix))
        assert w == pytest.approx(tokens / total, rel=1e-3), prefix


def test_data_config_validation():
    config_lib.validate(base_config())
    for key, value, msg in [("min_tokens", -1, ">= 0"), ("shuffle_buffer", 0, "positive"),
                            ("long_doc_policy", "drop", "split"), ("num_workers", -1, ">= 0"),
                            ("tokenizer", "", "non-empty")]:
        c = base_config()
        c.data[key] = value
        with pytest.raises(config_lib.ConfigError, match=f"data.{key}.*{msg}"):
            config_lib.validate(c)


def test_tfds_array_record_source(tmp_path):
    import tensorflow_datasets as tfds

    texts = [f"Record {i}. " + "The quality of mercy is not strained. " * (30 + i) for i in range(12)]

    class TinyText(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, t in enumerate(texts + [""]):
                yield i, {"text": t}

    TinyText(data_dir=str(tmp_path / "tfds"), file_format="array_record").download_and_prepare()
    mix = write(tmp_path / "m.yaml", yaml.safe_dump({"sources": [
        {"name": "t", "format": "tfds", "tfds_name": "tiny_text", "split": "train",
         "data_dir": str(tmp_path / "tfds"), "weight": 1}]}).encode())
    cfg = make_cfg(min_tokens=0)
    totals = {"read": 0, "tokens": 0, "skipped": {}}
    for host in range(2):
        it = pipeline.make_dataset(cfg, mix, host, 2, one_pass=True).__iter__()
        list(it)
        s = pipeline.source_stats(it)["t"]
        totals["read"] += s["documents_read"]
        totals["tokens"] += s["tokens"]
        for k, v in s["records_skipped"].items():
            totals["skipped"][k] = totals["skipped"].get(k, 0) + v
    tok = Tokenizer(TOKENIZER)
    assert totals == {"read": 12, "tokens": sum(map(len, tok.encode_batch(texts))),
                      "skipped": {"empty_text": 1}}
    # Shuffled, repeating reads work too.
    it = pipeline.make_train_iterator(cfg, mix, 0, 1)
    assert next(it)["inputs"].shape == (4, 32)
