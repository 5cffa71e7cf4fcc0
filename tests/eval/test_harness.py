"""Pair encoding, the evaluation loop, perplexity on text and the ``elmjax eval`` command."""

import json
import math
import os

import numpy as np
import pytest

from elmjax import cli
from elmjax.eval import encoding, harness, scoring
from elmjax.interop.hf import save_hf


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return encoding.open_tokenizer(tokenizer_path)


def test_encode_pairs_splits_the_whole_encoding(tok):
    (ctx, cont), = encoding.encode_pairs(tok, [("Question: is the sky blue?\nAnswer:", " yes")])
    whole = encoding.encode(tok, ["Question: is the sky blue?\nAnswer: yes"])[0]
    assert ctx[0] == tok.bos_id and ctx[1:] + cont == whole
    assert ctx == [tok.bos_id] + encoding.encode(tok, ["Question: is the sky blue?\nAnswer:"])[0]
    # Trailing whitespace of the context moves to the continuation.
    (ctx2, cont2), = encoding.encode_pairs(tok, [("Question: is the sky blue?\nAnswer: ", "yes")])
    assert (ctx2, cont2) == (ctx, cont)
    (ctx3, cont3), = encoding.encode_pairs(tok, [("The sky", " is blue")], add_bos=False)
    assert ctx3 == encoding.encode(tok, ["The sky"])[0]
    # An empty context is the prefix token (BOS).
    (ctx4, cont4), = encoding.encode_pairs(tok, [("", "The sky")])
    assert ctx4 == [tok.bos_id] and cont4 == encoding.encode(tok, ["The sky"])[0]


def test_evaluate_matches_hand_scoring(tiny_lm, tok, tokenizer_path, task_data):
    cfg, params = tiny_lm
    names = ["arc_easy", "boolq", "hellaswag", "piqa", "sciq", "winogrande", "arc_challenge"]
    metrics = harness.evaluate(cfg, params, tokenizer_path, names, task_data[0], batch_size=8)
    from elmjax.eval import tasks
    scorer = scoring.Scorer(cfg, params)
    for name in names:
        task = tasks.get_task(name)
        accs = []
        for ex in task.examples(task_data[0]):
            lls = [scorer.loglikelihood(encoding.encode_pairs(tok, [r]))[0][0] for r in ex.requests]
            accs.append(float(np.argmax(lls) == ex.gold))
        assert metrics[f"{name}/acc"] == pytest.approx(np.mean(accs)), name
        assert set(k.split("/")[1] for k in metrics if k.startswith(name + "/")) == (
            {m for m in task.metrics} | {f"{m}_stderr" for m in task.metrics})


def test_text_perplexity_units(tiny_lm, tok):
    cfg, params = tiny_lm
    texts = ["The sun is hot and the ice is cold.", "A dog can run."]
    out = harness.text_perplexity(scoring.Scorer(cfg, params), tok, texts)
    docs = encoding.encode(tok, texts)
    ppl = scoring.perplexity(cfg, params, docs, prefix_token=tok.bos_id)
    assert out["token_perplexity"] == pytest.approx(ppl, rel=1e-5)
    n_bytes = sum(len(t.encode()) for t in texts)
    total = -math.log(ppl) * sum(map(len, docs))
    assert out["bits_per_byte"] == pytest.approx(-total / n_bytes / math.log(2), rel=1e-5)
    assert out["documents"] == 2


def test_cli_eval_writes_table_and_json(tiny_lm, tokenizer_path, task_data, tmp_path, capsys):
    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    docs = tmp_path / "heldout.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                            ["The sun gives light to the earth.", "Water can boil. " * 30]))
    out = tmp_path / "results.json"
    rc = cli.main(["eval", "--hf", hf_dir, "--tokenizer", tokenizer_path, "--tasks",
                   "arc_easy,winogrande", "--data-dir", task_data[0], "--limit", "2",
                   "--perplexity", str(docs), "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "arc_easy" in table and "acc_norm" in table and "token_perplexity" in table
    report = json.loads(out.read_text())
    assert report["results"]["arc_easy"]["samples"] == 2
    assert 0.0 <= report["results"]["winogrande"]["acc"] <= 1.0
    assert report["results"]["perplexity:heldout.jsonl"]["documents"] == 2


def test_cli_eval_reports_missing_data(tiny_lm, tokenizer_path, tmp_path, capsys):
    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    rc = cli.main(["eval", "--hf", hf_dir, "--tokenizer", tokenizer_path, "--tasks", "piqa",
                   "--data-dir", str(tmp_path / "nowhere")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "piqa" in err and os.path.join("nowhere", "piqa") in err
