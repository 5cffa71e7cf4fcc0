"""Documents as prompts, few-shot contexts and per-document metrics, as lm-eval 0.4.13 makes them.

A task turns each document into an ``Example``: the question text, the answer
choices and the gold index (lm-eval's ``doc_to_text``, ``doc_to_choice`` and
``doc_to_target``). ``Example.requests_after(prefix)`` gives the ``(context,
continuation)`` strings to score, and ``fewshot_requests`` builds ``prefix`` as
lm-eval 0.4.13's ``ConfigurableTask.fewshot_context`` does for a plain-text model:

    description + shot_1 + ... + shot_n        (then the document's own question)
    shot = question + target_delimiter + answer + "\\n\\n"

with the shots drawn by lm-eval's samplers for the same seed (``fewshot_random_seed``,
1234 by default): ``"default"`` is one ``random.Random(seed)`` per task whose
``sample(pool, n)`` is called once per evaluated document, in document order;
``"first_n"`` (MMLU) takes the first ``n`` documents of the few-shot split.
*Multiple-input* tasks (WinoGrande) put the choices in the context: a shot is the
gold choice + delimiter + the shared continuation.

The few-shot pool is the task's few-shot split, all of it (``limit`` only cuts the
evaluated documents, as in lm-eval). Where lm-eval's few-shot split equals the
task's declared test split -- which includes tasks declaring neither (HellaSwag,
PIQA, BoolQ, WinoGrande, TruthfulQA) -- its sampler draws ``n + 1`` and drops the
evaluated document, which also advances the random stream differently; elmjax
does the same (``Task.exclude_eval_doc``). CrowS-Pairs and RACE draw from their
own test split without that exclusion, so a document can be shown its own answer,
as in lm-eval.

Why hand-written rather than lm-eval's own task objects: lm-eval is an optional
extra (it pulls in torch, datasets and more, and is not installed on the Python 3.12
CI leg), while ``elmjax eval`` and the trainer's ``eval.tasks`` must work without
it. What lm-eval contributes is a handful of string rules and one seeded
``random.sample`` call per document, which are written here once; the tests run
``lm_eval.simple_evaluate`` with the ``elmjax`` model on lm-eval's own task YAMLs
(local ``data_files``) and assert that it sends the identical request strings and
reports the same metrics.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Callable, Sequence

import numpy as np

from elmjax.eval import task_data

FEWSHOT_DELIMITER = "\n\n"
FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


@dataclasses.dataclass(frozen=True)
class Example:
    """One document: ``text`` (the question), ``choices`` and the ``gold`` choice index.

    target: for multiple-input tasks (WinoGrande) the continuation every choice
    shares, the choices being the contexts (``text`` is then unused); delimiter:
    lm-eval's ``target_delimiter`` between question and answer; labels: the 0/1
    truth of each choice where a task scores several true answers (TruthfulQA mc2).
    """

    text: str
    choices: tuple
    gold: int
    target: str | None = None
    delimiter: str = " "
    labels: tuple = ()

    def requests_after(self, prefix: str = "") -> tuple:
        """``(context, continuation)`` per choice, every context starting with ``prefix``."""
        if self.target is not None:
            return tuple((prefix + c, self.delimiter + self.target) for c in self.choices)
        return tuple((prefix + self.text, self.delimiter + c) for c in self.choices)

    @property
    def requests(self) -> tuple:
        """The zero-shot requests (no description, no shots)."""
        return self.requests_after("")

    def shot(self) -> str:
        """This document solved, as one few-shot example (ends with the few-shot delimiter)."""
        if self.target is not None:
            if self.target == "":  # lm-eval adds no answer turn for an empty target
                return self.choices[self.gold]
            return self.choices[self.gold] + self.delimiter + self.target + FEWSHOT_DELIMITER
        return self.text + self.delimiter + self.choices[self.gold] + FEWSHOT_DELIMITER


class ShotSampler:
    """lm-eval's few-shot samplers over a pool of ``Example``s.

    kind: ``"default"`` (``random.Random(seed).sample(pool, n)``, one call per
    document) or ``"first_n"`` (the first ``n`` of the pool, every time); keys: the
    pool's documents as dicts, to recognise the evaluated document in it.
    """

    def __init__(self, pool: Sequence[Example], kind: str = "default", seed: int = FEWSHOT_SEED,
                 keys: Sequence[dict] | None = None):
        if kind not in ("default", "first_n"):
            raise ValueError(f"unknown few-shot sampler {kind!r}; known: default, first_n")
        self.pool, self.kind, self.rnd = list(pool), kind, random.Random(seed)
        self.keys = list(keys) if keys is not None else [None] * len(self.pool)

    def sample(self, n: int, exclude: dict | None = None) -> list[Example]:
        """The ``n`` shots for the next document (``n <= len(pool)``).

        exclude: the evaluated document; when given, lm-eval draws ``n + 1`` and drops
        the pool entries equal to it (then draws ``n`` again from the pool without
        them if fewer than ``n`` remain).
        """
        if n == 0:
            return []
        if n + (exclude is not None) > len(self.pool):
            raise ValueError(f"{n} shots requested but the few-shot split has only "
                             f"{len(self.pool)} documents")
        if self.kind == "first_n":  # no first_n task here excludes the evaluated document
            return self.pool[:n]
        idx = list(range(len(self.pool)))
        if exclude is None:
            chosen = self.rnd.sample(idx, n)
        else:
            chosen = [i for i in self.rnd.sample(idx, n + 1) if self.keys[i] != exclude][:n]
            if len(chosen) < n:
                chosen = self.rnd.sample([i for i in idx if self.keys[i] != exclude], n)
        return [self.pool[i] for i in chosen]


def fewshot_requests(examples: Sequence[Example], shots: int, pool: Sequence[Example] = (),
                     sampler: str = "default", description: str = "",
                     seed: int = FEWSHOT_SEED, exclude: tuple | None = None) -> list[tuple]:
    """Each document's requests with ``description`` and ``shots`` examples from ``pool`` before it.

    examples: the evaluated documents, in order; pool: the few-shot split (needed
    when ``shots > 0``); exclude: ``(docs, pool_docs)``, the documents of both as
    dicts, when lm-eval drops the evaluated document from its shots. Returns one
    tuple of ``(context, continuation)`` per example.
    """
    keys = exclude[1] if exclude else None
    draw = ShotSampler(pool, sampler, seed, keys) if shots else None
    out = []
    for i, ex in enumerate(examples):
        prefix = description
        if draw is not None:
            shots_i = draw.sample(shots, exclude[0][i] if exclude else None)
            prefix += "".join(s.shot() for s in shots_i)
        out.append(ex.requests_after(prefix))
    return out


# --------------------------------------------------------------------------- metrics
# Per-document values; a task reports the mean of each over its documents.


def choice_metrics(example: Example, lls: Sequence[float], metrics: Sequence[str]) -> dict:
    """``acc``: the highest log-likelihood is the gold choice (first on ties); ``acc_norm``:
    the same after dividing each by its choice string's length (Python ``len``).
    """
    lls = np.asarray(lls, np.float64)
    out = {"acc": float(int(np.argmax(lls)) == example.gold)}
    if "acc_norm" in metrics:
        lengths = np.array([float(len(c)) for c in example.choices])
        out["acc_norm"] = float(int(np.argmax(lls / lengths)) == example.gold)
    return out


def mc2_metrics(example: Example, lls: Sequence[float], metrics: Sequence[str] = ()) -> dict:
    """TruthfulQA mc2 (lm-eval names it ``acc``): the probability mass of the true answers.

    ``p_i = exp(ll_i) / sum_j exp(ll_j)``; the value is ``sum of p_i over labels_i == 1``.
    """
    probs = np.exp(np.asarray(lls, np.float64))
    probs = probs / np.sum(probs)
    return {"acc": float(np.sum(probs[np.asarray(example.labels) == 1]))}


def crows_pairs_metrics(example: Example, lls: Sequence[float],
                        metrics: Sequence[str] = ()) -> dict:
    """CrowS-Pairs: ``likelihood_diff = |ll(more) - ll(less)|``; ``pct_stereotype``: 1 when the
    more stereotypical sentence (choice 0) is strictly more likely.
    """
    more, less = lls
    return {"likelihood_diff": abs(more - less), "pct_stereotype": float(more > less)}


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); NaN stderr for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    return mean, float(np.std(values, ddof=1) / math.sqrt(n))


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """The standard error of a size-weighted mean of subtasks (lm-eval's ``pooled_sample_stderr``).

    ``sqrt(sum((n_i - 1) * se_i^2 * n_i) / (N - k) / N)`` for ``k`` subtasks of ``N`` documents.
    """
    total, k = sum(sizes), len(sizes)
    if total - k <= 0:
        return math.nan
    var = sum((n - 1) * se ** 2 * n for n, se in zip(sizes, stderrs)) / (total - k)
    return math.sqrt(var / total)


# --------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """A multiple-choice task as lm-evaluation-harness 0.4.13 defines it.

    name: lm-eval's task name; split: the split it evaluates; source: where the
    public data comes from (for error messages); metrics: names reported; files:
    glob patterns for the evaluated split, tried after ``<name>/<split>.*``;
    normalise: a record in any accepted layout -> the hub's fields; build:
    normalised record -> ``Example``; tfds: ``TfdsSource``s tried, in order, when
    no file matches; fewshot_split: where shots come from; fewshot_files: glob
    patterns for it; sampler: ``"default"`` or ``"first_n"``; description: text
    before the shots; fixed_shots: a shot count no override changes (lm-eval pins
    TruthfulQA to 0); exclude_eval_doc: lm-eval's sampler draws one extra shot and
    drops the evaluated document (it does so when the few-shot split equals the
    declared test split, including tasks that declare neither: HellaSwag, PIQA,
    BoolQ, WinoGrande); score: ``(example, lls, metrics) -> {metric: value}`` per
    document; keep: records of a shared file that belong to this task.
    """

    name: str
    split: str
    source: str
    metrics: tuple
    files: tuple
    normalise: Callable[[dict], dict]
    build: Callable[[dict], Example]
    tfds: tuple = ()
    fewshot_split: str | None = None
    fewshot_files: tuple = ()
    sampler: str = "default"
    description: str = ""
    fixed_shots: int | None = None
    exclude_eval_doc: bool = False
    score: Callable = choice_metrics
    keep: Callable[[dict], bool] | None = None

    def patterns(self, split: str | None = None) -> list[str]:
        """Glob patterns (relative to the data directory) for ``split``, in the order tried."""
        split = split or self.split
        own = [f"{self.name}/{split}{ext}" for ext in (".jsonl", ".json", ".parquet")]
        own.append(f"{self.name}/{split}-*.parquet")
        if split == self.split:
            return own + list(self.files)
        return own + (list(self.fewshot_files) if split == self.fewshot_split else [])

    def docs(self, data_dir: str, limit: int | None = None, split: str | None = None) -> list[dict]:
        """The first ``limit`` (all when None) records of ``split``, in the hub's fields."""
        docs = task_data.read_docs(self, data_dir, split)
        if limit is not None:
            docs = docs[:limit]
        return [self.normalise(d) for d in docs]

    def examples(self, data_dir: str, limit: int | None = None,
                 split: str | None = None) -> list[Example]:
        """The first ``limit`` (all when None) documents of ``split`` (default: evaluated one)."""
        return [self.build(d) for d in self.docs(data_dir, limit, split)]

    def shots(self, requested: int) -> int:
        """The shot count used when ``requested`` is asked for (``fixed_shots`` wins)."""
        return self.fixed_shots if self.fixed_shots is not None else int(requested)

    def requests(self, data_dir: str, shots: int = 0, limit: int | None = None,
                 seed: int = FEWSHOT_SEED) -> tuple[list[Example], list[tuple]]:
        """``(examples, requests)``: the documents and, per document, its ``(context,
        continuation)`` per choice with ``shots(shots)`` examples from the few-shot split."""
        docs = self.docs(data_dir, limit)
        examples = [self.build(d) for d in docs]
        n = self.shots(shots)
        if n == 0:
            return examples, fewshot_requests(examples, 0, description=self.description)
        if self.fewshot_split is None:
            raise ValueError(f"{self.name} has no few-shot split: run it 0-shot")
        pool_docs = self.docs(data_dir, split=self.fewshot_split)
        need = n + 1 if self.exclude_eval_doc else n  # lm-eval draws one more to drop
        if len(pool_docs) < need:
            raise task_data.TaskDataError(
                f"{self.name}: {n}-shot prompts need at least {need} documents in its "
                f"'{self.fewshot_split}' split under {data_dir!r}, which has {len(pool_docs)}")
        pool = [self.build(d) for d in pool_docs]
        exclude = (docs, pool_docs) if self.exclude_eval_doc else None
        return examples, fewshot_requests(examples, n, pool, self.sampler, self.description,
                                          seed, exclude)
