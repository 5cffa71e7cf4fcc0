"""Few-shot suites: lm_eval.simple_evaluate with the ``elmjax`` model on lm-eval's own task YAMLs
(local data files, the suites' shot counts) sends the request strings elmjax builds and
reports the metrics elmjax reports."""

import os

import jax
import pytest

lm_eval = pytest.importorskip("lm_eval")

import elmjax  # noqa: E402
from elmjax.eval import encoding, harness, scoring, suites, tasks  # noqa: E402
from elmjax.interop.hf import save_hf  # noqa: E402
from tests.conftest import tiny_model  # noqa: E402
from tests.eval.eval_data import write_fewshot_layout  # noqa: E402

# task -> (lm-eval YAML under lm_eval/tasks, evaluated split, few-shot split or None, shots)
UPSTREAM = {
    "arc_challenge": ("arc/arc_challenge.yaml", "test", "train", 25),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation", "train", 10),
    "winogrande": ("winogrande/default.yaml", "validation", "train", 5),
    "mmlu_anatomy": ("mmlu/default/mmlu_anatomy.yaml", "test", "dev", 5),
    "mmlu_astronomy": ("mmlu/default/mmlu_astronomy.yaml", "test", "dev", 5),
    "truthfulqa_mc1": ("truthfulqa/truthfulqa_mc1.yaml", "validation", None, None),
    "truthfulqa_mc2": ("truthfulqa/truthfulqa_mc2.yaml", "validation", None, None),
    "crows_pairs_english": ("crows_pairs/crows_pairs_english.yaml", "test", None, 25),
    "race": ("race/race.yaml", "test", None, 0),
    "piqa": ("piqa/piqa.yaml", "validation", None, 0),
}


def write_yamls(yaml_dir, files) -> list[str]:
    """lm-eval task files including lm-eval's own YAML, swapping in local data and the shots."""
    root = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    names = []
    for task, (upstream, split, fewshot, shots) in UPSTREAM.items():
        data = {s: files[(task, s)] for s in {split, fewshot} - {None}}
        lines = [f"include: {os.path.join(root, upstream)}", f"task: local_{task}", "tag: []",
                 "dataset_path: json", "dataset_name: null", "dataset_kwargs:", "  data_files:"]
        lines += [f"    {s}: {p}" for s, p in data.items()]
        for key, s in (("training_split", "train"), ("validation_split", "validation"),
                       ("test_split", "test")):
            lines.append(f"{key}: {s if s in data and s != 'dev' else 'null'}")
        if shots is not None:
            lines.append(f"num_fewshot: {shots}")
        with open(os.path.join(yaml_dir, f"local_{task}.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        names.append(f"local_{task}")
    with open(os.path.join(yaml_dir, "local_mmlu.yaml"), "w") as f:
        f.write("group: local_mmlu\ntask:\n  - local_mmlu_anatomy\n  - local_mmlu_astronomy\n"
                "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: True\n")
    return names


@pytest.fixture(scope="module")
def model_128():
    cfg = tiny_model(max_context_length=128)
    return cfg, elmjax.init_params(cfg, jax.random.key(1))


def test_suite_tasks_match_lm_eval(model_128, tokenizer_path, tmp_path, monkeypatch):
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
    cfg, params = model_128
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    data_dir = str(tmp_path / "data")
    files = write_fewshot_layout(data_dir)
    yaml_dir = tmp_path / "yaml"
    yaml_dir.mkdir()
    names = write_yamls(str(yaml_dir), files)
    out = lm_eval.simple_evaluate(
        model="elmjax", model_args=f"pretrained={hf_dir},tokenizer={tokenizer_path},batch_size=8",
        tasks=[n for n in names if "mmlu" not in n] + ["local_mmlu"],
        task_manager=TaskManager(include_path=str(yaml_dir), include_defaults=False),
        bootstrap_iters=100, log_samples=False)

    shots = {t: spec[3] or 0 for t, spec in UPSTREAM.items()}
    # elmjax's own requests: the same strings, for every task at its suite shot count.
    mine = []
    for task, n in shots.items():
        mine += [r for per_doc in tasks.get_task(task).requests(data_dir, n)[1] for r in per_doc]
    assert sorted(seen) == sorted(mine)
    assert any(ctx.count("\n\n") >= 25 for ctx, _ in seen)  # the 25-shot prompts are there

    tok = encoding.open_tokenizer(tokenizer_path)
    scorer = scoring.Scorer(cfg, params, 8)
    ours = {}
    for task, n in shots.items():  # one run per shot count, as the suites would
        ours.update(harness.run_tasks(scorer, tok, [task], data_dir, num_fewshot=n))
    for task in UPSTREAM:
        theirs = out["results"][f"local_{task}"]
        for metric in tasks.get_task(task).metrics:
            assert theirs[f"{metric},none"] == pytest.approx(ours[task][metric], abs=1e-9), \
                (task, metric)
            assert theirs[f"{metric}_stderr,none"] == pytest.approx(
                ours[task][f"{metric}_stderr"], abs=1e-9), (task, metric)
    group = suites.aggregate([ours["mmlu_anatomy"], ours["mmlu_astronomy"]], ("acc",))
    assert out["results"]["local_mmlu"]["acc,none"] == pytest.approx(group["acc"])
    assert out["results"]["local_mmlu"]["acc_stderr,none"] == pytest.approx(group["acc_stderr"])
    # The continuous metrics are not trivially equal.
    assert ours["crows_pairs_english"]["likelihood_diff"] > 0
    assert 0 < ours["truthfulqa_mc2"]["acc"] < 1
