"""Few-shot prompts, the leaderboard tasks' metrics and the suites, checked by hand (no lm-eval)."""

import json
import math
import os
import random

import numpy as np
import pytest

from elmjax.eval import harness, prompts, suites, tasks
from tests.eval.eval_data import fewshot_docs, write_fewshot_layout


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fewshot"))
    write_fewshot_layout(root)
    return root


def test_mmlu_shots_are_the_subjects_dev_split_in_order(data_dir):
    docs = fewshot_docs()
    examples, requests = tasks.get_task("mmlu_anatomy").requests(data_dir, shots=5)
    dev = docs[("mmlu_anatomy", "dev")]

    def block(d, answer):
        c = d["choices"]
        return (f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\n"
                f"Answer:{answer}")

    want = ("The following are multiple choice questions (with answers) about anatomy.\n\n"
            + "".join(block(d, " " + "ABCD"[d["answer"]]) + "\n\n" for d in dev))
    for doc, per_doc in zip(docs[("mmlu_anatomy", "test")], requests):
        assert per_doc == tuple((want + block(doc, ""), " " + x) for x in "ABCD")
    # Another subject's prompts carry its own description and dev questions.
    _, other = tasks.get_task("mmlu_astronomy").requests(data_dir, shots=5)
    assert "about astronomy.\n\n" + block(docs[("mmlu_astronomy", "dev")][0], " ") in other[0][0][0]
    assert all(block(d, "") not in other[0][0][0] for d in dev)


def test_default_sampler_is_seeded_python_random(data_dir):
    docs = fewshot_docs()
    train = docs[("arc_challenge", "train")]
    rnd = random.Random(1234)
    _, requests = tasks.get_task("arc_challenge").requests(data_dir, shots=25)
    for doc, per_doc in zip(docs[("arc_challenge", "test")], requests):
        shots = [train[i] for i in rnd.sample(range(len(train)), 25)]
        want = "".join(f"Question: {d['question']}\nAnswer: "
                       f"{d['choices']['text'][d['choices']['label'].index(d['answerKey'])]}\n\n"
                       for d in shots) + f"Question: {doc['question']}\nAnswer:"
        assert [ctx for ctx, _ in per_doc] == [want] * len(doc["choices"]["text"])
    # HellaSwag (no declared test split): one extra draw per document, as lm-eval.
    _, requests = tasks.get_task("hellaswag").requests(data_dir, shots=10)
    pool = tasks.get_task("hellaswag").examples(data_dir, split="train")
    rnd = random.Random(1234)
    for per_doc in requests:
        shots = [pool[i] for i in rnd.sample(range(len(pool)), 11)][:10]
        assert per_doc[0][0].startswith("".join(s.text + " " + s.choices[s.gold] + "\n\n"
                                                for s in shots))


def test_winogrande_and_crows_pairs_shots(data_dir):
    _, requests = tasks.get_task("winogrande").requests(data_dir, shots=5)
    shots = requests[0][0][0].split("\n\n")[:5]
    train = fewshot_docs()[("winogrande", "train")]
    # A WinoGrande shot is the sentence with the right option filled in.
    filled = {d["sentence"].replace("_", d["option" + d["answer"]]) for d in train}
    assert set(shots) <= filled
    ex, requests = tasks.get_task("crows_pairs_english").requests(data_dir, shots=25)
    ctx, cont = requests[0][0]
    assert ctx.endswith("\n\n") and cont == ex[0].choices[0] and ctx.count("\n\n") == 25


def test_mc2_and_crows_pairs_formulas():
    ex = prompts.Example("q", ("a", "b", "c", "d"), 0, labels=(1, 1, 0, 0))
    lls = [-1.0, -2.0, -0.5, -3.0]
    p = np.exp(lls)
    assert prompts.mc2_metrics(ex, lls)["acc"] == pytest.approx((p[0] + p[1]) / p.sum())
    pair = prompts.Example("", ("more", "less"), 0, delimiter="")
    assert prompts.crows_pairs_metrics(pair, [-3.0, -5.5]) == {"likelihood_diff": 2.5,
                                                               "pct_stereotype": 1.0}
    assert prompts.crows_pairs_metrics(pair, [-5.0, -5.0])["pct_stereotype"] == 0.0


class TableScorer:
    """A stand-in model: the log-likelihood of a request is a fixed function of its tokens."""

    @staticmethod
    def ll(ctx, cont):
        return -0.37 * len(cont) - (sum(cont) % 11) / 3.0 - 0.01 * (len(ctx) % 5)

    def loglikelihood(self, requests):
        return [(self.ll(c, x), False) for c, x in requests]


def test_metrics_equal_formulas_on_given_loglikelihoods(data_dir, tokenizer_path):
    from elmjax.eval import encoding

    tok = encoding.open_tokenizer(tokenizer_path)
    results = harness.run_tasks(TableScorer(), tok, ["truthfulqa_mc2", "crows_pairs_english"],
                                data_dir, num_fewshot=25)
    for name, check in (("truthfulqa_mc2", "acc"), ("crows_pairs_english", None)):
        examples, requests = tasks.get_task(name).requests(data_dir, 25)
        values = {}
        for ex, per_doc in zip(examples, requests):
            lls = [TableScorer.ll(c, x) for c, x in encoding.encode_pairs(tok, per_doc)]
            if check:  # mc2: probability mass of the true answers
                p = np.exp(lls)
                values.setdefault("acc", []).append(p[np.array(ex.labels) == 1].sum() / p.sum())
            else:
                values.setdefault("likelihood_diff", []).append(abs(lls[0] - lls[1]))
                values.setdefault("pct_stereotype", []).append(float(lls[0] > lls[1]))
        for metric, v in values.items():
            assert results[name][metric] == pytest.approx(np.mean(v)), (name, metric)
            assert results[name][f"{metric}_stderr"] == pytest.approx(
                np.std(v, ddof=1) / math.sqrt(len(v))), (name, metric)
    assert results["truthfulqa_mc2"]["samples"] == 2  # pinned to 0 shots, still scored


def write_all_mmlu(root):
    """Every subject in the hub's ``all`` config layout: D/mmlu/all/{test,dev}.jsonl."""
    rng = random.Random(3)
    os.makedirs(os.path.join(root, "mmlu", "all"), exist_ok=True)
    for split, n in (("test", 2), ("dev", 5)):
        with open(os.path.join(root, "mmlu", "all", f"{split}.jsonl"), "w") as f:
            for s in tasks.MMLU_SUBJECTS:
                for i in range(n + (split == "test" and len(s) % 2)):
                    f.write(json.dumps({"question": f"{s} {i}?", "subject": s,
                                        "choices": [f"c{rng.randint(0, 9)}" for _ in range(4)],
                                        "answer": rng.randint(0, 3)}) + "\n")


def test_suites_report_paper_averages(data_dir, tokenizer_path, tmp_path):
    from elmjax.eval import encoding

    root = str(tmp_path)
    write_fewshot_layout(root)
    for d in os.listdir(root):  # the per-subject files would shadow the "all" file
        if d.startswith("mmlu_"):
            for f in os.listdir(os.path.join(root, d)):
                os.remove(os.path.join(root, d, f))
            os.rmdir(os.path.join(root, d))
    write_all_mmlu(root)
    tok = encoding.open_tokenizer(tokenizer_path)
    names = ["zero_shot", "openllm", "llm360"]
    results = harness.run_tasks(TableScorer(), tok, names, root)
    runs = suites.expand(names)
    tables = suites.suite_tables(results, runs, names)
    # Tasks at two shot counts are reported under both; TruthfulQA and MMLU once.
    assert {"arc_challenge@0shot", "arc_challenge@25shot", "winogrande@5shot", "mmlu",
            "truthfulqa_mc2", "crows_pairs_english", "mmlu_stem"} <= set(results)
    assert results["mmlu"]["samples"] == sum(results[f"mmlu_{s}"]["samples"]
                                             for s in tasks.MMLU_SUBJECTS)
    assert results["mmlu"]["acc"] == pytest.approx(
        sum(results[f"mmlu_{s}"]["acc"] * results[f"mmlu_{s}"]["samples"]
            for s in tasks.MMLU_SUBJECTS) / results["mmlu"]["samples"])
    paper = {"openllm": [("arc_challenge@25shot", "acc_norm"), ("hellaswag@10shot", "acc_norm"),
                         ("mmlu", "acc"), ("truthfulqa_mc2", "acc"), ("winogrande@5shot", "acc")],
             "llm360": [("arc_challenge@25shot", "acc_norm"),
                        ("crows_pairs_english", "pct_stereotype"), ("hellaswag@10shot", "acc_norm"),
                        ("mmlu", "acc"), ("piqa", "acc_norm"), ("race", "acc"),
                        ("truthfulqa_mc2", "acc"), ("winogrande@5shot", "acc")],
             "zero_shot": [("arc_challenge@0shot", "acc_norm"), ("arc_easy", "acc_norm"),
                           ("boolq", "acc"), ("hellaswag@0shot", "acc_norm"), ("piqa", "acc_norm"),
                           ("sciq", "acc_norm"), ("winogrande@0shot", "acc")]}
    for suite, entries in paper.items():
        want = np.mean([100 * results[key][metric] for key, metric in entries])
        assert tables[suite]["average"] == pytest.approx(want), suite
        assert list(tables[suite]["tasks"]) == [key for key, _ in entries]
    text = harness.format_suites(tables, {k: n for (_, n), k in suites.result_keys(runs).items()})
    assert "llm360" in text and f"{tables['llm360']['average']:.2f}" in text


def test_expand_overrides_and_errors():
    runs = suites.expand(["openllm", "arc_challenge"], num_fewshot=3)
    assert [(r.name, r.shots) for r in runs] == [
        ("arc_challenge", 3), ("hellaswag", 3), ("mmlu", 3), ("truthfulqa_mc2", 0),
        ("winogrande", 3)]
    assert [(r.name, r.shots) for r in suites.expand(["piqa", "mmlu"])] == [("piqa", 0),
                                                                            ("mmlu", 0)]
    with pytest.raises(ValueError, match="suites: zero_shot, openllm, llm360"):
        suites.expand(["openllm2"])


def test_missing_fewshot_split_says_which_file(tmp_path):
    data = tmp_path / "arc_challenge"
    data.mkdir()
    (data / "test.jsonl").write_text(json.dumps(fewshot_docs()[("arc_challenge", "test")][0]))
    task = tasks.get_task("arc_challenge")
    with pytest.raises(tasks.TaskDataError) as e:
        task.requests(str(tmp_path), shots=25)
    msg = str(e.value)
    assert "'train' split (the few-shot examples)" in msg
    assert str(data / "train.jsonl") in msg
    assert os.path.join(str(tmp_path), "ai2_arc", "ARC-Challenge", "train-*.parquet") in msg
    assert "ai2_arc/ARC-Challenge, split 'train'" in msg
    (data / "train.jsonl").write_text(json.dumps(fewshot_docs()[("arc_challenge", "test")][0]))
    with pytest.raises(tasks.TaskDataError, match="25-shot prompts need at least 25 documents"):
        task.requests(str(tmp_path), shots=25)
    assert len(task.requests(str(tmp_path), shots=1)[1]) == 1


def test_cli_suite_table_json_and_missing_shots(tiny_lm, tokenizer_path, task_data, tmp_path,
                                                capsys):
    from elmjax import cli
    from elmjax.interop.hf import save_hf

    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    out = tmp_path / "r.json"
    rc = cli.main(["eval", "--hf", hf_dir, "--tokenizer", tokenizer_path, "--tasks", "zero_shot",
                   "--data-dir", task_data[0], "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    table = report["suites"]["zero_shot"]
    assert table["average"] == pytest.approx(np.mean(list(table["tasks"].values())))
    assert table["tasks"]["arc_easy"] == pytest.approx(100 * report["results"]["arc_easy"]
                                                       ["acc_norm"])
    assert report["n-shot"]["boolq"] == 0 and f"{table['average']:.2f}" in text
    # The trainer's flat metrics carry the same average.
    metrics = harness.evaluate(cfg, params, tokenizer_path, ["zero_shot"], task_data[0])
    assert metrics["zero_shot/average"] == pytest.approx(table["average"])
    rc = cli.main(["eval", "--hf", hf_dir, "--tokenizer", tokenizer_path, "--tasks",
                   "arc_challenge", "--num-fewshot", "2", "--data-dir", task_data[0]])
    err = capsys.readouterr().err
    assert rc == 2 and os.path.join(task_data[0], "arc_challenge", "train.jsonl") in err


def test_eval_doc_exclusion_needs_one_more_shot(tmp_path):
    docs = fewshot_docs()
    root = tmp_path / "hellaswag"
    root.mkdir()
    (root / "validation.jsonl").write_text(json.dumps(docs[("hellaswag", "validation")][0]))
    (root / "train.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in docs[("hellaswag", "train")][:10]))
    task = tasks.get_task("hellaswag")
    with pytest.raises(tasks.TaskDataError, match="10-shot prompts need at least 11 documents"):
        task.requests(str(tmp_path), shots=10)
    assert len(task.requests(str(tmp_path), shots=9)[1]) == 1
