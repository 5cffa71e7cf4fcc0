"""lm-evaluation-harness with the ``elmjax`` model agrees with elmjax's own evaluator."""

import os

import pytest

lm_eval = pytest.importorskip("lm_eval")

from elmjax.eval import harness, tasks  # noqa: E402
from elmjax.interop.hf import save_hf  # noqa: E402


def write_local_task_yamls(yaml_dir, task_files) -> list[str]:
    """Task files that include lm-eval's own task YAML and only swap in local data files."""
    root = os.path.dirname(lm_eval.__file__)
    upstream = {"arc_easy": "tasks/arc/arc_easy.yaml", "arc_challenge": "tasks/arc/arc_challenge.yaml",
                "boolq": "tasks/super_glue/boolq/default.yaml",
                "hellaswag": "tasks/hellaswag/hellaswag.yaml", "piqa": "tasks/piqa/piqa.yaml",
                "sciq": "tasks/sciq/sciq.yaml", "winogrande": "tasks/winogrande/default.yaml"}
    names = []
    for task, (split, path) in task_files.items():
        kind = "parquet" if path.endswith(".parquet") else "json"
        name = f"local_{task}"
        with open(os.path.join(yaml_dir, f"{name}.yaml"), "w") as f:
            f.write(f"include: {os.path.join(root, upstream[task])}\n"
                    f"task: {name}\ntag: []\n"
                    f"dataset_path: {kind}\ndataset_name: null\n"
                    f"dataset_kwargs:\n  data_files:\n    {split}: {path}\n"
                    "training_split: null\n")
            other = "test_split" if split == "validation" else "validation_split"
            f.write(f"{other}: null\n")
        names.append(name)
    return names


def test_lm_eval_gives_the_same_accuracies(tiny_lm, tokenizer_path, task_data, tmp_path,
                                           monkeypatch):
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

    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    yaml_dir = tmp_path / "yaml"
    yaml_dir.mkdir()
    data_dir, files = task_data
    names = write_local_task_yamls(str(yaml_dir), files)
    out = lm_eval.simple_evaluate(
        model="elmjax", model_args=f"pretrained={hf_dir},tokenizer={tokenizer_path},batch_size=8",
        tasks=names, task_manager=TaskManager(include_path=str(yaml_dir), include_defaults=False),
        num_fewshot=0, bootstrap_iters=0, log_samples=False)
    ours = harness.evaluate(cfg, params, tokenizer_path, list(files), data_dir)
    # lm-eval sent exactly the (context, continuation) strings elmjax's tasks build.
    mine = [r for t in files for ex in tasks.get_task(t).examples(data_dir) for r in ex.requests]
    assert sorted(seen) == sorted(mine)
    for task in files:
        theirs = out["results"][f"local_{task}"]
        for metric in tasks.get_task(task).metrics:
            assert theirs[f"{metric},none"] == pytest.approx(ours[f"{task}/{metric}"]), (task, metric)
    # Identical accuracies are only meaningful if the model is not trivially constant.
    assert len({round(v, 6) for k, v in ours.items() if k.endswith("/acc")}) > 1


def test_adapter_loglikelihood_rolling_is_perplexity(tiny_lm, tokenizer_path, tmp_path):
    import math

    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    import elmjax.eval.lm_eval  # noqa: F401
    from elmjax.eval import encoding, scoring

    cfg, params = tiny_lm
    hf_dir = str(tmp_path / "hf")
    save_hf(hf_dir, cfg, params)
    lm = get_model("elmjax").create_from_arg_string(
        f"pretrained={hf_dir},tokenizer={tokenizer_path},add_bos_token=True")
    text = "The sun is hot. " * 20
    (ll,) = lm.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    tok = encoding.open_tokenizer(tokenizer_path)
    doc = encoding.encode(tok, [text])[0]
    assert len(doc) > 64  # spans several windows
    ppl = scoring.perplexity(cfg, params, [doc], prefix_token=tok.bos_id)
    assert math.exp(-ll / len(doc)) == pytest.approx(ppl, rel=1e-5)
    request = Instance("generate_until", {}, ("The sun", {"until": ["."], "max_gen_toks": 4}), 0)
    (text,) = lm.generate_until([request])
    # The adapter's greedy text is elmjax.generate's greedy continuation, cut at "until".
    import jax

    import elmjax

    prompt = [tok.bos_id] + encoding.encode(tok, ["The sun"])[0]
    want = elmjax.generate(cfg, params, [prompt], 4, key=jax.random.key(0), temperature=0.0,
                           stop_tokens=[tok.eos_id], max_length=cfg.model.max_context_length)
    want = tok.decode([t for t in want.to_lists()[0] if t != tok.eos_id]).split(".")[0]
    assert text == want and "." not in text
