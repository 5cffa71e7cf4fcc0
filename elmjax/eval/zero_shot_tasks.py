"""The OpenELM paper's zero-shot tasks, with lm-evaluation-harness 0.4.13's few-shot splits.

See ``elmjax.eval.tasks`` for the prompts, files and TFDS datasets of each task.
The few-shot split is lm-eval's: its ``training_split`` where it declares one.
"""

from __future__ import annotations

import re

from elmjax.eval.prompts import Example, Task
from elmjax.eval.task_data import TfdsSource, _same


def _arc_normalise(doc: dict) -> dict:
    q = doc["question"]
    if isinstance(q, dict):  # AI2's original JSONL: {"question": {"stem", "choices": [...]}}
        return {"id": doc.get("id"), "question": q["stem"], "answerKey": doc["answerKey"],
                "choices": {"text": [c["text"] for c in q["choices"]],
                            "label": [c["label"] for c in q["choices"]]}}
    return doc


def _arc_build(doc: dict) -> Example:
    choices = doc["choices"]
    return Example(f"Question: {doc['question']}\nAnswer:", tuple(choices["text"]),
                   list(choices["label"]).index(doc["answerKey"]))


def _boolq_normalise(doc: dict) -> dict:
    if "label" not in doc:  # Google's original JSONL: {"question", "passage", "answer": bool}
        return dict(doc, label=int(bool(doc["answer"])))
    return doc


def _boolq_build(doc: dict) -> Example:
    return Example(f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:", ("no", "yes"),
                   int(doc["label"]))


def _hellaswag_clean(text: str) -> str:
    # WikiHow artefacts: " [title]" marks a heading; other [brackets] are dropped.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_build(doc: dict) -> Example:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return Example(_hellaswag_clean(doc["activity_label"] + ": " + ctx),
                   tuple(_hellaswag_clean(e) for e in doc["endings"]), int(doc["label"]))


def _piqa_build(doc: dict) -> Example:
    return Example(f"Question: {doc['goal']}\nAnswer:", (doc["sol1"], doc["sol2"]),
                   int(doc["label"]))


def _sciq_build(doc: dict) -> Example:
    context = f"{doc['support'].lstrip()}\nQuestion: {doc['question']}\nAnswer:"
    choices = (doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"])
    return Example(context, choices, 3)


def _winogrande_build(doc: dict) -> Example:
    sentence = doc["sentence"]
    blank = sentence.index("_")
    contexts = tuple(sentence[:blank] + opt for opt in (doc["option1"], doc["option2"]))
    gold = {"1": 0, "2": 1}[str(doc["answer"])]
    return Example("", contexts, gold, target=sentence[blank + 1:].strip())


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
                (TfdsSource(f"ai2_arc/{subset}", "test"),), fewshot_split="train",
                fewshot_files=(f"ai2_arc/{subset}/train-*.parquet",
                               f"ARC-V1-Feb2018-2/{subset}/{subset}-Train.jsonl",
                               f"{name}/{subset}-Train.jsonl"))


TASKS: dict[str, Task] = {t.name: t for t in [
    _arc("arc_easy", "ARC-Easy"),
    _arc("arc_challenge", "ARC-Challenge"),
    Task("boolq", "validation", "aps/super_glue (boolq) on the Hugging Face hub, or Google's "
         "BoolQ release (dev.jsonl, train.jsonl)", ("acc",),
         ("super_glue/boolq/validation-*.parquet", "boolq/dev.jsonl"), _boolq_normalise,
         _boolq_build, (TfdsSource("bool_q", "validation"),
                        TfdsSource("super_glue/boolq", "validation", _tfds_super_glue_boolq)),
         fewshot_split="train", exclude_eval_doc=True,
         fewshot_files=("super_glue/boolq/train-*.parquet", "boolq/train.jsonl")),
    Task("hellaswag", "validation", "Rowan/hellaswag on the Hugging Face hub, or the original "
         "hellaswag_val.jsonl / hellaswag_train.jsonl", ("acc", "acc_norm"),
         ("hellaswag/data/validation-*.parquet", "hellaswag/hellaswag_val.jsonl"), _same,
         _hellaswag_build, (TfdsSource("hellaswag", "validation", _tfds_hellaswag,
                                       warning=HELLASWAG_TFDS_WARNING),),
         fewshot_split="train", exclude_eval_doc=True,
         fewshot_files=("hellaswag/data/train-*.parquet", "hellaswag/hellaswag_train.jsonl")),
    Task("piqa", "validation", "baber/piqa on the Hugging Face hub, or the original PIQA "
         "release (valid.jsonl with valid-labels.lst)", ("acc", "acc_norm"),
         ("piqa/data/validation-*.parquet", "piqa/valid.jsonl"), _same, _piqa_build,
         (TfdsSource("piqa", "validation", _tfds_piqa),), fewshot_split="train",
         exclude_eval_doc=True, fewshot_files=("piqa/data/train-*.parquet", "piqa/train.jsonl")),
    Task("sciq", "test", "allenai/sciq on the Hugging Face hub, or the original SciQ release "
         "(test.json, train.json)", ("acc", "acc_norm"),
         ("sciq/data/test-*.parquet", "sciq/test.json"), _same, _sciq_build,
         (TfdsSource("sciq", "test", note="not in the TFDS catalog: a dataset you build, named "
                     "sciq, with the hub's Text fields question, distractor1, distractor2, "
                     "distractor3, correct_answer, support"),), fewshot_split="train",
         fewshot_files=("sciq/data/train-*.parquet", "sciq/train.json")),
    Task("winogrande", "validation", "allenai/winogrande (winogrande_xl) on the Hugging Face "
         "hub, or the original WinoGrande 1.1 release (dev.jsonl, train_xl.jsonl)", ("acc",),
         ("winogrande/winogrande_xl/validation-*.parquet", "winogrande/dev.jsonl",
          "winogrande_1.1/dev.jsonl"), _same, _winogrande_build,
         (TfdsSource("winogrande", "validation", _tfds_winogrande, fewshot_split="train_xl"),),
         fewshot_split="train", exclude_eval_doc=True,
         fewshot_files=("winogrande/winogrande_xl/train-*.parquet", "winogrande/train_xl.jsonl",
                        "winogrande_1.1/train_xl.jsonl")),
]}
