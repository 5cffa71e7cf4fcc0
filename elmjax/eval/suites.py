"""The paper's three evaluation suites, task groups, and what ``--tasks`` names expand to.

=========  ==============================================================================
suite      tasks (shots, metric averaged)
=========  ==============================================================================
zero_shot  arc_challenge (0, acc_norm), arc_easy (0, acc_norm), boolq (0, acc),
           hellaswag (0, acc_norm), piqa (0, acc_norm), sciq (0, acc_norm), winogrande (0, acc)
openllm    arc_challenge (25, acc_norm), hellaswag (10, acc_norm), mmlu (5, acc),
           truthfulqa_mc2 (0, acc = mc2), winogrande (5, acc)
llm360     arc_challenge (25, acc_norm), crows_pairs_english (25, pct_stereotype),
           hellaswag (10, acc_norm), mmlu (5, acc), piqa (0, acc_norm), race (0, acc),
           truthfulqa_mc2 (0, acc = mc2), winogrande (5, acc)
=========  ==============================================================================

A suite's average is the plain mean of those metrics in percent, as the paper's
tables average them (CrowS-Pairs' ``pct_stereotype`` enters as it is, although
lower is better). ``mmlu`` is lm-eval's group: its 57 ``mmlu_<subject>`` tasks, its
``acc`` the mean over all their documents (lm-eval's size-weighted aggregate) with
the pooled standard error; the groups ``mmlu_stem``, ``mmlu_other``,
``mmlu_social_sciences`` and ``mmlu_humanities`` are reported beside it.

A ``--tasks`` list mixes suite names, group names and task names. Suites bring
their own shot counts; a task or group named alone runs 0-shot, as lm-eval's
default; ``num_fewshot`` overrides every shot count (TruthfulQA stays 0-shot, as
in lm-eval). A task that runs at more than one shot count in one evaluation (say
``zero_shot,openllm``: ARC-Challenge at 0 and at 25 shots) is reported under
``<task>@<n>shot`` for each; otherwise under its lm-eval name.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from elmjax.eval import prompts, tasks


@dataclasses.dataclass(frozen=True)
class Run:
    """One task or group at one shot count; ``metric`` is what a suite averages."""

    name: str
    shots: int
    metric: str = ""


def _runs(spec: str) -> tuple[Run, ...]:
    out = []
    for item in spec.split():
        name, shots, metric = item.split(":")
        out.append(Run(name, int(shots), metric))
    return tuple(out)


SUITES: dict[str, tuple[Run, ...]] = {
    "zero_shot": _runs("arc_challenge:0:acc_norm arc_easy:0:acc_norm boolq:0:acc "
                       "hellaswag:0:acc_norm piqa:0:acc_norm sciq:0:acc_norm winogrande:0:acc"),
    "openllm": _runs("arc_challenge:25:acc_norm hellaswag:10:acc_norm mmlu:5:acc "
                     "truthfulqa_mc2:0:acc winogrande:5:acc"),
    "llm360": _runs("arc_challenge:25:acc_norm crows_pairs_english:25:pct_stereotype "
                    "hellaswag:10:acc_norm mmlu:5:acc piqa:0:acc_norm race:0:acc "
                    "truthfulqa_mc2:0:acc winogrande:5:acc"),
}

GROUPS: dict[str, tuple[str, ...]] = {
    "mmlu": tuple(f"mmlu_{s}" for s in tasks.MMLU_SUBJECTS),
    **{f"mmlu_{c}": tuple(f"mmlu_{s}" for s in tasks.MMLU_SUBJECTS if tasks.MMLU_CATEGORY[s] == c)
       for c in ("stem", "other", "social_sciences", "humanities")},
}
# Groups reported beside a group (lm-eval's mmlu tree).
SUBGROUPS: dict[str, tuple[str, ...]] = {
    "mmlu": ("mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities")}


def expand(names: Sequence[str], num_fewshot: int | None = None) -> list[Run]:
    """``--tasks`` items -> the distinct ``Run``s, in order of first mention.

    Raises ``ValueError`` naming the known suites, groups and tasks for an unknown name.
    """
    runs: list[Run] = []
    for name in names:
        if name in SUITES:
            items = list(SUITES[name])
        elif name in GROUPS or name in tasks.TASKS:
            items = [Run(name, 0)]
        else:
            known = [n for n in tasks.TASKS if not n.startswith("mmlu_")] + ["mmlu_<subject>"]
            raise ValueError(f"unknown task {name!r}; suites: {', '.join(SUITES)}; groups: "
                             f"{', '.join(GROUPS)}; tasks: {', '.join(known)}")
        for run in items:
            if num_fewshot is not None:
                run = dataclasses.replace(run, shots=int(num_fewshot))
            if run.name in tasks.TASKS:  # a pinned task (TruthfulQA) keeps its count
                run = dataclasses.replace(run, shots=tasks.get_task(run.name).shots(run.shots))
            if all((r.name, r.shots) != (run.name, run.shots) for r in runs):
                runs.append(run)
    return runs


def leaf_tasks(run: Run) -> tuple[str, ...]:
    """The task names a run scores: a group's members, or the task itself."""
    return GROUPS.get(run.name, (run.name,))


def result_keys(runs: Sequence[Run]) -> dict[tuple[str, int], str]:
    """``(name, shots) -> results key``: the name, or ``name@<n>shot`` if it runs at several."""
    counts: dict[str, set] = {}
    for run in runs:
        for name in (run.name, *SUBGROUPS.get(run.name, ()), *leaf_tasks(run)):
            counts.setdefault(name, set()).add(run.shots)
    return {(name, shots): name if len(counts[name]) == 1 else f"{name}@{shots}shot"
            for name, all_shots in counts.items() for shots in all_shots}


def aggregate(rows: Sequence[dict], metrics: Sequence[str]) -> dict:
    """A group's row from its tasks' rows: size-weighted means and pooled standard errors."""
    rows = [row for row in rows if row["samples"]]
    sizes = [row["samples"] for row in rows]
    out = {}
    for m in metrics:
        values = [row[m] for row in rows]
        out[m] = sum(v * n for v, n in zip(values, sizes)) / sum(sizes)
        out[f"{m}_stderr"] = prompts.pooled_stderr([row[f"{m}_stderr"] for row in rows], sizes)
    out["samples"] = sum(sizes)
    return out


def suite_tables(results: dict[str, dict], runs: Sequence[Run], requested: Sequence[str],
                 num_fewshot: int | None = None) -> dict[str, dict]:
    """For each suite named in ``requested``: its metric per task in percent and their average.

    results: keyed by ``result_keys(runs)`` (as ``harness.run_tasks`` returns them);
    runs: ``expand(requested, num_fewshot)``. Returns ``{suite: {"tasks": {key:
    percent}, "metrics": {key: metric name}, "average": percent}}``.
    """
    keys = result_keys(runs)
    out = {}
    for suite in requested:
        if suite not in SUITES:
            continue
        row, metrics = {}, {}
        for entry, run in zip(SUITES[suite], expand([suite], num_fewshot)):
            key = keys[(run.name, run.shots)]
            row[key], metrics[key] = 100.0 * results[key][entry.metric], entry.metric
        out[suite] = {"tasks": row, "metrics": metrics,
                      "average": sum(row.values()) / len(row)}
    return out
