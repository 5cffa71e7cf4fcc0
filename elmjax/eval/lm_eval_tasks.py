"""The suites as lm-evaluation-harness task configs over local data, for ``--model elmjax``.

``write_task_configs(data_dir, out_dir, ["openllm"])`` writes, for every task of the
expanded names at its shot count, a YAML that *includes lm-eval's own task file*
(prompts, sampler, metrics: lm-eval's definitions, not elmjax's) and swaps in local
data: the documents elmjax reads from ``data_dir`` (any accepted layout or TFDS
dataset, normalised to the hub's fields) written as JSONL under ``out_dir/data``.
Tasks are named ``elmjax_<task>_<n>shot``; ``mmlu`` becomes the group
``elmjax_mmlu_<n>shot`` (lm-eval's size-weighted ``acc``), and a suite the group
``elmjax_<suite>`` of its tasks. Then::

    lm_eval run --model elmjax --model_args pretrained=DIR,tokenizer=tok.model \\
        --include_path OUT --tasks elmjax_openllm

(``elmjax.eval.lm_eval.simple_evaluate_suites`` does both and adds the suite
averages). This module does not import lm-eval; it only needs its installed task
directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Sequence

from elmjax.eval import suites, tasks

# elmjax task -> lm-eval's task file (under lm_eval/tasks).
UPSTREAM = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "sciq": "sciq/sciq.yaml",
    "winogrande": "winogrande/default.yaml",
    "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml",
    "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml",
    "crows_pairs_english": "crows_pairs/crows_pairs_english.yaml",
    "race": "race/race.yaml",
    **{f"mmlu_{s}": f"mmlu/default/mmlu_{s}.yaml" for s in tasks.MMLU_SUBJECTS},
}
SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}


def lm_eval_task_dir() -> str:
    """lm-eval's installed ``tasks`` directory; ``ImportError`` when lm-eval is not installed."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lm-evaluation-harness is not installed (pip install 'elmjax[eval]')")
    return os.path.join(list(spec.submodule_search_locations)[0], "tasks")


def task_name(task: str, shots: int) -> str:
    """The lm-eval name of ``task`` (or group) at ``shots``: ``elmjax_<task>_<n>shot``."""
    return f"elmjax_{task}_{shots}shot"


def _write_data(task: tasks.Task, data_dir: str, out_dir: str, split: str,
                limit: int | None) -> str:
    path = os.path.join(out_dir, "data", task.name, f"{split}.jsonl")
    if not os.path.isfile(path):
        docs = task.docs(data_dir, limit if split == task.split else None, split)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs)
    return path


def _write_task(task: tasks.Task, shots: int, data_dir: str, out_dir: str,
                limit: int | None) -> str:
    root = lm_eval_task_dir()
    name = task_name(task.name, shots)
    splits = [task.split] + ([task.fewshot_split] if shots and task.fewshot_split
                             and task.fewshot_split != task.split else [])
    files = {s: _write_data(task, data_dir, out_dir, s, limit) for s in splits}
    lines = [f"include: {os.path.join(root, UPSTREAM[task.name])}", f"task: {name}", "tag: []",
             "dataset_path: json", "dataset_name: null", "dataset_kwargs:", "  data_files:"]
    lines += [f"    {s}: {json.dumps(p)}" for s, p in files.items()]
    # Only the splits written here (MMLU's "dev" stays lm-eval's fewshot_split).
    lines += [f"{key}: {s if s in files else 'null'}" for s, key in SPLIT_KEYS.items()]
    if task.fixed_shots is None:
        lines.append(f"num_fewshot: {shots}")
    with open(os.path.join(out_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return name


def _write_group(name: str, members: Sequence[str], out_dir: str, metric: str | None) -> str:
    lines = [f"group: {name}", "task:"] + [f"  - {m}" for m in members]
    if metric:
        lines += ["aggregate_metric_list:", f"  - metric: {metric}", "    weight_by_size: True"]
    with open(os.path.join(out_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return name


def write_task_configs(data_dir: str, out_dir: str, names: Sequence[str],
                       num_fewshot: int | None = None, limit: int | None = None) -> list[str]:
    """Writes lm-eval configs for ``names`` (suites, groups, tasks) into ``out_dir``.

    Returns the names to pass to lm-eval's ``--tasks`` (with ``--include_path
    out_dir``): one per suite named and one per other run. ``limit`` keeps the first
    N documents of each evaluated split. Missing data raises ``TaskDataError``
    naming what to put where.
    """
    os.makedirs(out_dir, exist_ok=True)
    names = ["zero_shot" if n == "all" else n for n in names]
    runs = suites.expand(names, num_fewshot)
    written = {}
    for run in runs:
        if run.name in suites.GROUPS:
            members = [_write_task(tasks.get_task(t), run.shots, data_dir, out_dir, limit)
                       for t in suites.GROUPS[run.name]]
            written[(run.name, run.shots)] = _write_group(task_name(run.name, run.shots),
                                                          members, out_dir, "acc")
        else:
            written[(run.name, run.shots)] = _write_task(tasks.get_task(run.name), run.shots,
                                                         data_dir, out_dir, limit)
    top = []
    for name in names:
        if name in suites.SUITES:
            members = [written[(r.name, r.shots)] for r in suites.expand([name], num_fewshot)]
            top.append(_write_group(f"elmjax_{name}", members, out_dir, None))
        else:
            top += [written[(r.name, r.shots)] for r in suites.expand([name], num_fewshot)
                    if written[(r.name, r.shots)] not in top]
    return top


def results_from_lm_eval(lm_results: dict, names: Sequence[str],
                         num_fewshot: int | None = None) -> dict[str, dict]:
    """lm-eval's ``results`` for configs from ``write_task_configs`` -> elmjax's results layout.

    ``{"elmjax_arc_challenge_25shot": {"acc,none": ...}}`` becomes ``{key: {"acc": ...,
    "acc_stderr": ..., "samples": n}}`` keyed as ``harness.run_tasks`` keys them, so
    ``suites.suite_tables`` applies.
    """
    runs = suites.expand(["zero_shot" if n == "all" else n for n in names], num_fewshot)
    out = {}
    for (name, shots), key in suites.result_keys(runs).items():
        row = lm_results.get(task_name(name, shots))
        if row is None:
            continue
        entry = {}
        for k, v in row.items():
            metric, _, filt = k.partition(",")
            if filt == "none" and isinstance(v, (int, float)):
                entry[metric] = float(v)
        out[key] = entry
    return out
