"""`elmjax data inspect` and `elmjax tokenizer train` on the shipped sample corpus."""

import json

from elmjax import cli


def test_data_inspect_one_pass_json_counts_every_format(capsys):
    rc = cli.main(["data", "inspect", "--mixture", "data_mixtures/quickstart.yaml", "--one-pass",
                   "--json", "--seq-len", "128", "--batch-size", "16"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    # The sample's record counts, known from how build_samples.py wrote it (see its README).
    assert {n: s["documents_read"] for n, s in report["sources"].items()} == {
        "refinedweb": 75, "pile": 108, "redpajama": 108, "dolma": 16, "poems": 19}
    for s in report["sources"].values():
        assert s["documents_kept"] + sum(s["documents_filtered"].values()) == s["documents_read"]
        assert s["records_skipped"] == {} and s["tokens"] > 0
    assert report["tokens"] == sum(s["tokens_packed"] for s in report["sources"].values())


def test_data_inspect_reports_missing_files(capsys, tmp_path):
    assert cli.main(["data", "inspect", "--mixture", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_tokenizer_train(tmp_path, capsys):
    out = tmp_path / "tok.model"
    assert cli.main(["tokenizer", "train", "--mixture", "data_mixtures/quickstart.yaml",
                     "--output", str(out), "--vocab-size", "512", "--max-documents", "40"]) == 0
    assert "512 pieces, bos=1 eos=2 pad=3" in capsys.readouterr().out
