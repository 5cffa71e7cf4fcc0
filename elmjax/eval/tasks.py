"""The OpenELM paper's zero-shot tasks, as lm-evaluation-harness (0.4.x) defines them.

Each task reads its evaluation split from local files in a public distributed
format, or from a prepared tensorflow-datasets dataset (below), and turns every
document into an ``Example``: the ``(context,
continuation)`` strings to score, the answer choices and the gold index.
Prompts, choices, target delimiter (one space), splits and metrics follow
lm-evaluation-harness's task files:

=============  ===========  ======================================================  ==============
task           split        prompt (context)                                        metrics
=============  ===========  ======================================================  ==============
arc_easy       test         ``Question: {question}\\nAnswer:``                       acc, acc_norm
arc_challenge  test         ``Question: {question}\\nAnswer:``                       acc, acc_norm
boolq          validation   ``{passage}\\nQuestion: {question}?\\nAnswer:``           acc
hellaswag      validation   ``{activity_label}: {ctx_a} {ctx_b.capitalize()}``       acc, acc_norm
piqa           validation   ``Question: {goal}\\nAnswer:``                           acc, acc_norm
sciq           test         ``{support.lstrip()}\\nQuestion: {question}\\nAnswer:``  acc, acc_norm
winogrande     validation   the sentence up to ``_`` with each option filled in      acc
=============  ===========  ======================================================  ==============

WinoGrande is scored by *partial evaluation*: the contexts differ (one per
option) and the shared continuation is the rest of the sentence after the
blank. ``acc_norm`` divides each choice's log-likelihood by the length of the
choice string (Python ``len``, as lm-evaluation-harness does) before the argmax.

Accepted files, under ``--data-dir D`` (first match wins, parquet shards are
concatenated): ``D/<task>/<split>.{jsonl,json,parquet}`` or ``<split>-*.parquet``
in the Hugging Face hub's field layout, or the layouts named in each task's
``files`` (hub snapshots and the original releases: AI2's ARC JSONL, Google's
BoolQ ``dev.jsonl``, HellaSwag's ``hellaswag_val.jsonl``, PIQA's ``valid.jsonl``
with ``valid-labels.lst``, SciQ's ``test.json``, WinoGrande's ``dev.jsonl``).

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

Prepare them where there is internet access with ``file_format="array_record"``
(``tfds build ai2_arc --file_format=array_record --data_dir D``; tfds 4.9.10's
``tfds`` command and its archive extraction need TensorFlow on that machine), then
copy ``D``. A dataset prepared as ``tfrecord`` is read only if TensorFlow is
installed; otherwise ``TaskDataError`` says to re-prepare it. Records are
converted to the hub's layout (text decoded, ``ClassLabel``s by their names; TFDS
stores ARC's labels ``1``-``5`` as ``A``-``E``, which changes no request), and
come in TFDS's stored order, not the files' (``limit`` takes a different subset).

HellaSwag from TFDS differs: TFDS keeps only ``context`` (the original ``ctx``,
``ctx_a + " " + ctx_b``), so the prompt is ``{activity_label}: {context}`` and
the second fragment is not passed through ``capitalize()`` as lm-evaluation-harness
does (``"he"`` stays ``"he"``, ``"SHE puts"`` stays ``"SHE puts"``). Accuracies can
differ slightly from runs on the hub or original files; each read emits one
``UserWarning`` saying so.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
import warnings
from typing import Callable, Sequence

import numpy as np

TARGET_DELIMITER = " "


class TaskDataError(FileNotFoundError):
    """A task's data files are missing or unreadable; the message says what to put where."""


def _same(doc: dict) -> dict:
    return doc


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A prepared tensorflow-datasets dataset that holds a task's split.

    name: ``dataset[/config]`` as in the TFDS catalog (also its folder under the
    data directory); split: the TFDS split; convert: a decoded record (text as
    ``str``, ``ClassLabel``s as their names) -> a record in a layout the task's
    ``normalise`` accepts; warning: emitted once per read from this source;
    note: added to the missing-data message.
    """

    name: str
    split: str
    convert: Callable[[dict], dict] = _same
    warning: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Example:
    """One document as requests: ``requests[i]`` is ``(context, continuation)`` for choice ``i``.

    choices: lm-evaluation-harness's ``doc_to_choice`` strings (their lengths
    normalise ``acc_norm``); gold: the index of the correct choice.
    """

    requests: tuple
    choices: tuple
    gold: int


@dataclasses.dataclass(frozen=True)
class Task:
    """A zero-shot multiple-choice task.

    name: the lm-evaluation-harness task name; split: the split it evaluates;
    source: where the public data comes from (for error messages); metrics:
    names reported; files: glob patterns under the data directory, tried after
    ``<name>/<split>.*``; normalise: a record in any accepted layout -> the hub's
    fields; build: normalised record -> ``Example``; tfds: ``TfdsSource``s tried,
    in order, when no file matches.
    """

    name: str
    split: str
    source: str
    metrics: tuple
    files: tuple
    normalise: Callable[[dict], dict]
    build: Callable[[dict], Example]
    tfds: tuple = ()

    def patterns(self) -> list[str]:
        """Glob patterns (relative to the data directory) in the order they are tried."""
        own = [f"{self.name}/{self.split}{ext}" for ext in (".jsonl", ".json", ".parquet")]
        own.append(f"{self.name}/{self.split}-*.parquet")
        return own + list(self.files)

    def examples(self, data_dir: str, limit: int | None = None) -> list[Example]:
        """The first ``limit`` (all when None) documents of the split as ``Example``s."""
        docs = read_docs(self, data_dir)
        if limit is not None:
            docs = docs[:limit]
        return [self.build(self.normalise(d)) for d in docs]


# --------------------------------------------------------------------------- reading


def _read_file(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()]
        data = json.load(f)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise TaskDataError(f"{path}: expected a JSON list of records")
    return data


def _attach_labels(path: str, docs: list[dict]) -> list[dict]:
    """PIQA's original release keeps labels in ``<stem>-labels.lst`` beside the JSONL."""
    if not docs or "label" in docs[0]:
        return docs
    labels_path = os.path.splitext(path)[0] + "-labels.lst"
    if not os.path.isfile(labels_path):
        return docs
    with open(labels_path, encoding="utf-8") as f:
        labels = [int(x) for x in f.read().split()]
    if len(labels) != len(docs):
        raise TaskDataError(f"{labels_path}: {len(labels)} labels for {len(docs)} records in {path}")
    return [dict(d, label=y) for d, y in zip(docs, labels)]


def read_docs(task: Task, data_dir: str) -> list[dict]:
    """Raw records of ``task``'s split from the first matching file(s) under ``data_dir``.

    Raises ``TaskDataError`` naming the accepted paths when none exists.
    """
    for pattern in task.patterns():
        paths = sorted(glob.glob(os.path.join(data_dir, pattern)))
        if not paths:
            continue
        docs = []
        for path in paths:
            try:
                docs.extend(_attach_labels(path, _read_file(path)))
            except (OSError, ValueError) as e:
                raise TaskDataError(f"{task.name}: cannot read {path}: {e}") from None
        return docs
    for source in task.tfds:
        version_dir = _tfds_version_dir(data_dir, source.name)
        if version_dir is not None:
            return _read_tfds(task, source, version_dir)
    accepted = "\n  ".join(os.path.join(data_dir, p) for p in task.patterns())
    searched = "\n  ".join(
        f"{s.name}, split '{s.split}': {os.path.join(data_dir, s.name, '<version>')}"
        f"/dataset_info.json{' (' + s.note + ')' if s.note else ''}" for s in task.tfds)
    raise TaskDataError(
        f"{task.name}: no data for its '{task.split}' split under {data_dir!r}. Put the "
        f"'{task.split}' split of {task.source} at one of:\n  {accepted}\n"
        f"or prepare one of these tensorflow-datasets datasets there (data_dir={data_dir!r}, "
        f"file_format='array_record'):\n  {searched}\n"
        f"(nothing is downloaded at run time)")


def _tfds_version_dir(data_dir: str, name: str) -> str | None:
    """``data_dir/<dataset>[/<config>]/<highest version>`` with a ``dataset_info.json``; or None."""
    root = os.path.join(data_dir, *name.split("/"))
    try:
        entries = os.listdir(root)
    except OSError:
        return None
    versions = [v for v in entries if re.fullmatch(r"\d+\.\d+\.\d+", v)
                and os.path.isfile(os.path.join(root, v, "dataset_info.json"))]
    if not versions:
        return None
    return os.path.join(root, max(versions, key=lambda v: tuple(map(int, v.split(".")))))


def _decode_tfds(value, feature):
    """A TFDS record -> plain Python: bytes -> str, ``ClassLabel`` -> its name, numpy -> lists."""
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.FeaturesDict):
        return {k: _decode_tfds(value[k], f) for k, f in feature.items()}
    if isinstance(feature, tfds.features.Sequence):
        inner = feature.feature
        if isinstance(inner, tfds.features.FeaturesDict):  # a dict of equal-length lists
            return {k: [_decode_tfds(x, f) for x in value[k]] for k, f in inner.items()}
        return [_decode_tfds(x, inner) for x in value]
    if isinstance(feature, tfds.features.ClassLabel):
        return feature.int2str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.tolist() if isinstance(value, (np.generic, np.ndarray)) else value


def _read_tfds(task: Task, source: TfdsSource, version_dir: str) -> list[dict]:
    """Records of ``source`` (prepared under ``version_dir``), converted by ``source.convert``."""
    import importlib.util

    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TaskDataError(f"{task.name}: reading {version_dir} needs tensorflow-datasets "
                            f"(pip install tensorflow-datasets)") from None
    try:
        builder = tfds.builder_from_directory(version_dir)
        info, fmt = builder.info, builder.info.file_format
        if source.split not in info.splits:
            raise TaskDataError(f"{task.name}: {version_dir} has no '{source.split}' split "
                                f"(it has: {', '.join(sorted(info.splits))})")
        if info.available_file_formats() & tfds.core.FileFormat.with_random_access():
            data = builder.as_data_source(split=source.split)
            records = data.__getitems__(range(len(data)))  # one batch read: ~2x faster
        elif importlib.util.find_spec("tensorflow") is not None:  # not tested: no TF here
            records = list(tfds.as_numpy(builder.as_dataset(split=source.split,
                                                            shuffle_files=False)))
        else:
            raise TaskDataError(
                f"{task.name}: {version_dir} is in {fmt.value if fmt else 'tfrecord'} format, "
                f"which only TensorFlow reads. Re-prepare it with file_format='array_record' "
                f"(`tfds build {source.name} --file_format=array_record --data_dir DIR`) or "
                f"install tensorflow")
        docs = [source.convert(_decode_tfds(r, info.features)) for r in records]
    except TaskDataError:
        raise
    except Exception as e:  # tfds raises many kinds: name the dataset, keep the cause
        raise TaskDataError(f"{task.name}: cannot read the TFDS dataset at {version_dir}: "
                            f"{type(e).__name__}: {e}") from e
    if source.warning:
        warnings.warn(f"{task.name} read from TFDS ({version_dir}): {source.warning}",
                      stacklevel=3)
    return docs


# --------------------------------------------------------------------------- tasks


def _multiple_choice(context: str, choices: Sequence[str], gold: int) -> Example:
    choices = tuple(choices)
    return Example(tuple((context, TARGET_DELIMITER + c) for c in choices), choices, int(gold))


def _arc_normalise(doc: dict) -> dict:
    q = doc["question"]
    if isinstance(q, dict):  # AI2's original JSONL: {"question": {"stem", "choices": [...]}}
        return {"id": doc.get("id"), "question": q["stem"], "answerKey": doc["answerKey"],
                "choices": {"text": [c["text"] for c in q["choices"]],
                            "label": [c["label"] for c in q["choices"]]}}
    return doc


def _arc_build(doc: dict) -> Example:
    choices = doc["choices"]
    return _multiple_choice(f"Question: {doc['question']}\nAnswer:", choices["text"],
                            list(choices["label"]).index(doc["answerKey"]))


def _boolq_normalise(doc: dict) -> dict:
    if "label" not in doc:  # Google's original JSONL: {"question", "passage", "answer": bool}
        return dict(doc, label=int(bool(doc["answer"])))
    return doc


def _boolq_build(doc: dict) -> Example:
    return _multiple_choice(f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:",
                            ["no", "yes"], int(doc["label"]))


def _hellaswag_clean(text: str) -> str:
    # WikiHow artefacts: " [title]" marks a heading; other [brackets] are dropped.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_build(doc: dict) -> Example:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return _multiple_choice(_hellaswag_clean(doc["activity_label"] + ": " + ctx),
                            [_hellaswag_clean(e) for e in doc["endings"]], int(doc["label"]))


def _piqa_build(doc: dict) -> Example:
    return _multiple_choice(f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]],
                            int(doc["label"]))


def _sciq_build(doc: dict) -> Example:
    context = f"{doc['support'].lstrip()}\nQuestion: {doc['question']}\nAnswer:"
    choices = [doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"]]
    return _multiple_choice(context, choices, 3)


def _winogrande_build(doc: dict) -> Example:
    sentence = doc["sentence"]
    blank = sentence.index("_")
    contexts = tuple(sentence[:blank] + opt for opt in (doc["option1"], doc["option2"]))
    continuation = TARGET_DELIMITER + sentence[blank + 1:].strip()
    gold = {"1": 0, "2": 1}[str(doc["answer"])]
    return Example(tuple((c, continuation) for c in contexts), contexts, gold)


# TFDS records (decoded by ``_decode_tfds``) -> a layout the task's ``normalise`` accepts.

HELLASWAG_TFDS_WARNING = (
    "TFDS keeps only 'context' (= ctx_a + ' ' + ctx_b), so the prompt is "
    "'{activity_label}: {context}' where lm-evaluation-harness builds "
    "'{activity_label}: {ctx_a} {ctx_b.capitalize()}': the second context fragment keeps its "
    "original capitalisation, and accuracies can differ slightly from runs on the hub or "
    "original hellaswag files")


def _tfds_hellaswag(doc: dict) -> dict:
    # The whole context stands as ctx_a with an empty ctx_b (as the hub's WikiHow records have).
    return {"activity_label": doc["activity_label"], "ctx_a": doc["context"], "ctx_b": "",
            "ctx": doc["context"], "endings": doc["endings"], "label": str(doc["label"]),
            "source_id": doc["source_id"], "split_type": doc["split_type"]}


def _tfds_piqa(doc: dict) -> dict:
    return dict(doc, label=int(doc["label"]))  # ClassLabel(num_classes=2): names "0", "1"


def _tfds_super_glue_boolq(doc: dict) -> dict:
    return dict(doc, label=["False", "True"].index(doc["label"]))


def _tfds_winogrande(doc: dict) -> dict:
    doc = dict(doc)
    doc["answer"] = doc.pop("label")  # ClassLabel names "1", "2": the hub's answers
    return doc


def _arc(name: str, subset: str) -> Task:
    return Task(name, "test", f"allenai/ai2_arc ({subset}) on the Hugging Face hub, or AI2's "
                f"ARC-V1-Feb2018 release", ("acc", "acc_norm"),
                (f"ai2_arc/{subset}/test-*.parquet",
                 f"ARC-V1-Feb2018-2/{subset}/{subset}-Test.jsonl",
                 f"{name}/{subset}-Test.jsonl"), _arc_normalise, _arc_build,
                (TfdsSource(f"ai2_arc/{subset}", "test"),))


TASKS: dict[str, Task] = {t.name: t for t in [
    _arc("arc_easy", "ARC-Easy"),
    _arc("arc_challenge", "ARC-Challenge"),
    Task("boolq", "validation", "aps/super_glue (boolq) on the Hugging Face hub, or Google's "
         "BoolQ release (dev.jsonl)", ("acc",),
         ("super_glue/boolq/validation-*.parquet", "boolq/dev.jsonl"), _boolq_normalise,
         _boolq_build, (TfdsSource("bool_q", "validation"),
                        TfdsSource("super_glue/boolq", "validation", _tfds_super_glue_boolq))),
    Task("hellaswag", "validation", "Rowan/hellaswag on the Hugging Face hub, or the original "
         "hellaswag_val.jsonl", ("acc", "acc_norm"),
         ("hellaswag/data/validation-*.parquet", "hellaswag/hellaswag_val.jsonl"), _same,
         _hellaswag_build, (TfdsSource("hellaswag", "validation", _tfds_hellaswag,
                                       warning=HELLASWAG_TFDS_WARNING),)),
    Task("piqa", "validation", "baber/piqa on the Hugging Face hub, or the original PIQA "
         "release (valid.jsonl with valid-labels.lst)", ("acc", "acc_norm"),
         ("piqa/data/validation-*.parquet", "piqa/valid.jsonl"), _same, _piqa_build,
         (TfdsSource("piqa", "validation", _tfds_piqa),)),
    Task("sciq", "test", "allenai/sciq on the Hugging Face hub, or the original SciQ release "
         "(test.json)", ("acc", "acc_norm"),
         ("sciq/data/test-*.parquet", "sciq/test.json"), _same, _sciq_build,
         (TfdsSource("sciq", "test", note="not in the TFDS catalog: a dataset you build, named "
                     "sciq, with the hub's Text fields question, distractor1, distractor2, "
                     "distractor3, correct_answer, support"),)),
    Task("winogrande", "validation", "allenai/winogrande (winogrande_xl) on the Hugging Face "
         "hub, or the original WinoGrande 1.1 release (dev.jsonl)", ("acc",),
         ("winogrande/winogrande_xl/validation-*.parquet", "winogrande/dev.jsonl",
          "winogrande_1.1/dev.jsonl"), _same, _winogrande_build,
         (TfdsSource("winogrande", "validation", _tfds_winogrande),)),
]}


def get_task(name: str) -> Task:
    """The task called ``name``; ``ValueError`` listing the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


# --------------------------------------------------------------------------- metrics


def example_metrics(task: Task, example: Example, lls: Sequence[float]) -> dict[str, float]:
    """Per-document metrics (1.0 or 0.0) from the log-likelihood of each choice ``[choices]``.

    ``acc``: argmax of the log-likelihoods is the gold choice (first index on
    ties); ``acc_norm``: the same after dividing by each choice string's length.
    """
    lls = np.asarray(lls, np.float64)
    out = {"acc": float(int(np.argmax(lls)) == example.gold)}
    if "acc_norm" in task.metrics:
        lengths = np.array([float(len(c)) for c in example.choices])
        out["acc_norm"] = float(int(np.argmax(lls / lengths)) == example.gold)
    return out


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); stderr is NaN for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    return mean, float(np.std(values, ddof=1) / math.sqrt(n))
