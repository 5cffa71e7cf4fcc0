"""Few-shot suites: lm_eval.simple_evaluate with the ``elmjax`` model on lm-eval's own task YAMLs
(local data files, the suites' shot counts) sends the request strings elmjax builds and
reports the metrics elmjax reports."""

import os

import pytest

lm_eval = pytest.importorskip("lm_eval")

from elmjax.eval import harness, lm_eval_tasks, scoring, suites, tasks  # noqa: E402
from elmjax.interop.hf import save_hf  # noqa: E402
from tests.eval.eval_data import write_fewshot_layout  # noqa: E402

# The suites' tasks at their shot counts (TruthfulQA is pinned to 0 by its task file).
SHOTS = {"arc_challenge": 25, "hellaswag": 10, "winogrande": 5, "mmlu_anatomy": 5,
         "mmlu_astronomy": 5, "truthfulqa_mc1": 0, "truthfulqa_mc2": 0, "crows_pairs_english": 25,
         "race": 0, "piqa": 0}


def write_yamls(yaml_dir, data_dir) -> list[str]:
    """lm-eval task files that include lm-eval's own YAMLs, with local data and the shots."""
    names = []
    for task, shots in SHOTS.items():
        names += lm_eval_tasks.write_task_configs(data_dir, yaml_dir, [task], num_fewshot=shots)
    with open(os.path.join(yaml_dir, "local_mmlu.yaml"), "w") as f:
        f.write("group: local_mmlu\ntask:\n  - elmjax_mmlu_anatomy_5shot\n"
                "  - elmjax_mmlu_astronomy_5shot\naggregate_metric_list:\n  - metric: acc\n"
                "    weight_by_size: True\n")
    return names


def test_suite_tasks_match_lm_eval(tiny_lm, tokenizer_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    import elmjax.eval.lm_eval as adapter  # registers "elmjax"
    from lm_eval.tasks import TaskManager

    seen = []
    original = adapter.ElmjaxLM.loglikelihood

    def recording(self, requests, disable_tqdm=False):
        seen.extend(req.args for req in requests)
        return original(self, requests, disable_tqdm)

    monkeypatch.setattr(adapter.ElmjaxLM, "loglikelihood", recording)
    cfg, params = tiny_lm  # a 64-token window: long prompts are cut on the left, alike
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    data_dir = str(tmp_path / "data")
    write_fewshot_layout(data_dir)
    yaml_dir = tmp_path / "yaml"
    names = write_yamls(str(yaml_dir), data_dir)
    out = lm_eval.simple_evaluate(
        model="elmjax", model_args=f"pretrained={hf_dir},tokenizer={tokenizer_path},batch_size=8",
        tasks=[n for n in names if "mmlu" not in n] + ["local_mmlu"],
        task_manager=TaskManager(include_path=str(yaml_dir), include_defaults=False),
        bootstrap_iters=100, log_samples=False)

    shots = SHOTS
    # elmjax's own requests: the same strings, for every task at its suite shot count.
    mine = []
    for task, n in shots.items():
        mine += [r for per_doc in tasks.get_task(task).requests(data_dir, n)[1] for r in per_doc]
    assert sorted(seen) == sorted(mine)
    assert any(ctx.count("\n\n") >= 25 for ctx, _ in seen)  # the 25-shot prompts are there

    from elmjax.eval import encoding

    tok = encoding.open_tokenizer(tokenizer_path)
    scorer = scoring.Scorer(cfg, params, 8)
    ours = {}
    for task, n in shots.items():  # one run per shot count, as the suites would
        ours.update(harness.run_tasks(scorer, tok, [task], data_dir, num_fewshot=n))
    # lm-eval scores every task's requests in one length-sorted stream of batches, elmjax task by
    # task: the same float32 log-likelihoods from differently shaped batches agree to ~1e-7
    # relative, so the continuous metrics (likelihood_diff, mc2) are compared to 1e-6; counts
    # of correct answers (acc, acc_norm, pct_stereotype, mc1) must agree exactly.
    for task, n in SHOTS.items():
        theirs = out["results"][lm_eval_tasks.task_name(task, n)]
        for metric in tasks.get_task(task).metrics:
            tol = dict(rel=1e-6) if metric == "likelihood_diff" or task.endswith("mc2") else \
                dict(abs=1e-9)
            assert theirs[f"{metric},none"] == pytest.approx(ours[task][metric], **tol), \
                (task, metric)
            assert theirs[f"{metric}_stderr,none"] == pytest.approx(
                ours[task][f"{metric}_stderr"], **tol), (task, metric)
    group = suites.aggregate([ours["mmlu_anatomy"], ours["mmlu_astronomy"]], ("acc",))
    assert out["results"]["local_mmlu"]["acc,none"] == pytest.approx(group["acc"])
    assert out["results"]["local_mmlu"]["acc_stderr,none"] == pytest.approx(group["acc_stderr"])
    # The continuous metrics are not trivially equal.
    assert ours["crows_pairs_english"]["likelihood_diff"] > 0
    assert 0 < ours["truthfulqa_mc2"]["acc"] < 1


def test_suite_through_the_adapter_has_elmjax_average(tiny_lm, tokenizer_path, task_data, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    from elmjax.eval import lm_eval as adapter

    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    out = adapter.simple_evaluate_suites(f"pretrained={hf_dir},tokenizer={tokenizer_path}",
                                         ["zero_shot"], task_data[0], bootstrap_iters=0,
                                         log_samples=False)
    ours = harness.evaluate(cfg, params, tokenizer_path, ["zero_shot"], task_data[0])
    assert out["suites"]["zero_shot"]["average"] == pytest.approx(ours["zero_shot/average"])
    assert out["results"]["elmjax_piqa_0shot"]["acc_norm,none"] == pytest.approx(
        ours["piqa/acc_norm"])
