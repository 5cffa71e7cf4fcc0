"""The OpenELM paper's evaluation tasks, as lm-evaluation-harness 0.4.13 defines them.

Each task reads its evaluated split (and, for few-shot prompts, its few-shot split)
from local files in a public distributed format, or from a prepared
tensorflow-datasets dataset, and turns every document into an ``Example``
(``elmjax.eval.prompts``): the question, the answer choices and the gold index.
Prompts, choices, target delimiter (one space unless said), splits, few-shot
splits and metrics follow lm-eval's task files:

``task`` (evaluated split; few-shot split): question -- metrics

- ``arc_easy``, ``arc_challenge`` (test; train): ``Question: {question}\\nAnswer:`` --
  acc, acc_norm
- ``boolq`` (validation; train): ``{passage}\\nQuestion: {question}?\\nAnswer:`` -- acc
- ``hellaswag`` (validation; train): ``{activity_label}: {ctx_a} {ctx_b.capitalize()}``,
  cleaned of WikiHow markers -- acc, acc_norm
- ``piqa`` (validation; train): ``Question: {goal}\\nAnswer:`` -- acc, acc_norm
- ``sciq`` (test; train): ``{support.lstrip()}\\nQuestion: {question}\\nAnswer:`` --
  acc, acc_norm
- ``winogrande`` (validation; train of winogrande_xl): the sentence up to ``_`` with each
  option filled in, the rest of the sentence as the shared continuation -- acc
- ``mmlu_<subject>`` (test; dev): ``{question.strip()}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\n``
  ``D. {c3}\\nAnswer:``, choices ``A``-``D`` -- acc
- ``truthfulqa_mc1``, ``truthfulqa_mc2`` (validation; 0-shot): six fixed Q/A pairs, then
  ``\\n\\nQ: {question}\\nA:`` -- acc (mc2: the probability mass of the true answers)
- ``crows_pairs_english`` (test; test): an empty question, each sentence scored whole with
  no delimiter -- likelihood_diff, pct_stereotype
- ``race`` (test; test): ``Article: {article}\\n\\n``, the article's earlier questions
  answered, then the last question -- acc

MMLU's choices are the letters ``A``-``D``, its shots the first five of the
subject's ``dev`` split (lm-eval's ``first_n`` sampler) after the description
``The following are multiple choice questions (with answers) about {subject}.\\n\\n``;
the other tasks draw shots with lm-eval's seeded default sampler. TruthfulQA is
pinned to 0 shots (lm-eval ignores ``--num_fewshot`` for it too); ``truthfulqa_mc2``
reports, under lm-eval's name ``acc``, the normalised probability of the true answers.

WinoGrande is scored by *partial evaluation*: the contexts differ (one per
option) and the shared continuation is the rest of the sentence after the
blank. ``acc_norm`` divides each choice's log-likelihood by the length of the
choice string (Python ``len``, as lm-evaluation-harness does) before the argmax.

Accepted files, under ``--data-dir D`` (first match wins, parquet shards are
concatenated): ``D/<task>/<split>.{jsonl,json,parquet}`` or ``<split>-*.parquet``
in the Hugging Face hub's field layout, or the layouts named in each task's
``files``/``fewshot_files`` (hub snapshots such as ``D/ai2_arc/ARC-Challenge/train-*.parquet``,
``D/mmlu/<subject>/dev-*.parquet`` or ``D/mmlu/all/test-*.parquet``, and the original
releases: AI2's ARC JSONL, Google's BoolQ ``dev.jsonl``, HellaSwag's
``hellaswag_val.jsonl``, PIQA's ``valid.jsonl`` with ``valid-labels.lst``, SciQ's
``test.json``, WinoGrande's ``dev.jsonl`` and ``train_xl.jsonl``).

When no file matches, the same ``D`` is read as a tensorflow-datasets data
directory: the task's dataset prepared there, ``D/<dataset>[/<config>]/<version>/``
(the highest version), is opened with ``tfds.builder_from_directory`` (no builder
code, and no TensorFlow for the ``array_record`` format):

=============  ==================================================  ===========
task           TFDS dataset (tried in this order)                  split
=============  ==================================================  ===========
arc_easy       ``ai2_arc/ARC-Easy``                                test
arc_challenge  ``ai2_arc/ARC-Challenge``                           test
boolq          ``bool_q``, then ``super_glue/boolq``               validation
hellaswag      ``hellaswag``                                       validation
piqa           ``piqa``                                            validation
sciq           ``sciq``: not in the TFDS catalog; a dataset you    test
               build with the hub's Text fields (question,
               distractor1-3, correct_answer, support)
winogrande     ``winogrande``                                      validation
=============  ==================================================  ===========

Few-shot splits come from the same datasets (``train``; WinoGrande's
``train_xl``). MMLU, TruthfulQA and CrowS-Pairs are not in the TFDS catalog, and
TFDS's ``race`` stores its options as nested sequences that only TensorFlow
serialises: use their hub files. Prepare the datasets where there is internet access with
``file_format="array_record"`` (``tfds build ai2_arc --file_format=array_record
--data_dir D``; tfds 4.9.10's ``tfds`` command and its archive extraction need
TensorFlow on that machine), then copy ``D``. A dataset prepared as ``tfrecord``
is read only if TensorFlow is installed; otherwise ``TaskDataError`` says to
re-prepare it. Records are converted to the hub's layout (text decoded,
``ClassLabel``s by their names; TFDS stores ARC's labels ``1``-``5`` as
``A``-``E``, which changes no request), and come in TFDS's stored order, not the
files' (``limit`` takes a different subset, and the seeded shots differ).

HellaSwag from TFDS differs: TFDS keeps only ``context`` (the original ``ctx``,
``ctx_a + " " + ctx_b``), so the prompt is ``{activity_label}: {context}`` and
the second fragment is not passed through ``capitalize()`` as lm-evaluation-harness
does (``"he"`` stays ``"he"``, ``"SHE puts"`` stays ``"SHE puts"``). Accuracies can
differ slightly from runs on the hub or original files; each read emits one
``UserWarning`` saying so.
"""

from __future__ import annotations

from typing import Sequence

from elmjax.eval import leaderboard_tasks, zero_shot_tasks
from elmjax.eval.leaderboard_tasks import MMLU_CATEGORY, MMLU_SUBJECTS
from elmjax.eval.prompts import Example, Task, mean_and_stderr
from elmjax.eval.task_data import TaskDataError, TfdsSource
from elmjax.eval.zero_shot_tasks import HELLASWAG_TFDS_WARNING

__all__ = ["Example", "HELLASWAG_TFDS_WARNING", "MMLU_CATEGORY", "MMLU_SUBJECTS", "TASKS", "Task",
           "TaskDataError", "TfdsSource", "example_metrics", "get_task", "mean_and_stderr"]

TASKS: dict[str, Task] = {**zero_shot_tasks.TASKS, **leaderboard_tasks.TASKS}


def get_task(name: str) -> Task:
    """The task called ``name``; ``ValueError`` listing the known tasks otherwise."""
    if name not in TASKS:
        known = [n for n in TASKS if not n.startswith("mmlu_")]
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known)}, and "
                         f"mmlu_<subject> for the {len(MMLU_SUBJECTS)} MMLU subjects")
    return TASKS[name]


def example_metrics(task: Task, example: Example, lls: Sequence[float]) -> dict[str, float]:
    """One document's metrics from the log-likelihood of each of its choices ``[choices]``."""
    return task.score(example, lls, task.metrics)
