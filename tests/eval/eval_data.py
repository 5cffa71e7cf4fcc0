"""Test data for evaluation tests: a tokenizer corpus and hand-written task documents."""

import random


WORDS = ("the a an of to in is was it that on for with as by at from this which or be are "
         "question answer yes no true false water sun moon rock plant animal cold hot light "
         "heavy energy earth air fire tree cat dog man woman he she they put took because "
         "bottle cup table kitchen door open close cut paper knife glass sand boil ice melt "
         "people science cell body grow small large long short run walk jump sky blue red").split()


def corpus_lines(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English lines covering the words of the hand-written items."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", "?", "!", ",", ":"]))
    return lines


def train_tokenizer(path, vocab_size: int = 120) -> str:
    """Trains a LLaMA-layout SentencePiece model (<unk>=0, <s>=1, </s>=2) and writes ``path``."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_prefix=str(path), vocab_size=vocab_size,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        num_threads=1, minloglevel=2)
    return str(path) + ".model"


# --------------------------------------------------------------------------- task data
# A few hand-written documents per task, in the Hugging Face hub's field layout.

HF_DOCS = {
    ("arc_easy", "test"): [
        {"id": "e1", "question": "Which of these is hot?", "answerKey": "B",
         "choices": {"text": ["ice", "the sun", "snow"], "label": ["A", "B", "C"]}},
        {"id": "e2", "question": "What do plants need to grow?", "answerKey": "1",
         "choices": {"text": ["light", "rock", "glass", "paper"], "label": ["1", "2", "3", "4"]}},
        {"id": "e3", "question": "What is the sky?", "answerKey": "A",
         "choices": {"text": ["blue", "a red rock"], "label": ["A", "B"]}},
    ],
    ("arc_challenge", "test"): [
        {"id": "c1", "question": "Why does ice melt?", "answerKey": "B",
         "choices": {"text": ["it is cold", "energy from the sun"], "label": ["A", "B"]}},
        {"id": "c2", "question": "Which animal can run?", "answerKey": "C",
         "choices": {"text": ["a tree", "a rock", "a dog", "a cup"],
                     "label": ["A", "B", "C", "D"]}},
    ],
    ("boolq", "validation"): [
        {"question": "is the sky blue", "passage": "The sky is blue because of light.",
         "idx": 0, "label": 1},
        {"question": "does ice boil", "passage": "Ice is cold. Water can boil when hot.",
         "idx": 1, "label": 0},
    ],
    ("hellaswag", "validation"): [
        {"ind": 4, "activity_label": "Cutting paper", "ctx_a": "A man takes a knife.",
         "ctx_b": "he", "ctx": "A man takes a knife. he",
         "endings": ["cuts the paper [title] with care.", "walks to the door.",
                     "jumps in the  sky [step] again.", "boils water."],
         "source_id": "wikihow~1", "split": "val", "split_type": "indomain", "label": "0"},
        {"ind": 9, "activity_label": "Kitchen", "ctx_a": "A woman opens the door.",
         "ctx_b": "SHE puts a cup on the table.",
         "ctx": "A woman opens the door. SHE puts a cup on the table.",
         "endings": ["She took the cup.", "the cat ran.", "ice melts.", "a dog walks."],
         "source_id": "activitynet~2", "split": "val", "split_type": "zeroshot", "label": "2"},
        {"ind": 12, "activity_label": "Food and Entertaining", "ctx_a": "[header] How to boil "
         "water [title] Put water in a cup. [step] Heat it with fire.", "ctx_b": "",
         "ctx": "[header] How to boil water [title] Put water in a cup. [step] Heat it with fire.",
         "endings": ["[substeps] The water is hot.", "The ice is cold.", "Run to the sky.",
                     "Cut the paper."],
         "source_id": "wikihow~3", "split": "val", "split_type": "indomain", "label": "0"},
    ],
    ("piqa", "validation"): [
        {"goal": "To cut paper", "sol1": "use a knife.", "sol2": "use ice.", "label": 0},
        {"goal": "To boil water", "sol1": "put it in the sky.", "sol2": "heat it with fire.",
         "label": 1},
    ],
    ("sciq", "test"): [
        {"question": "What does the sun give?", "distractor1": "rock", "distractor2": "ice",
         "distractor3": "sand", "correct_answer": "light",
         "support": "  The sun is hot. It gives light and energy to the earth."},
        {"question": "What is in the body?", "distractor1": "glass", "distractor2": "paper",
         "distractor3": "sand", "correct_answer": "cell", "support": ""},
    ],
    ("winogrande", "validation"): [
        {"sentence": "The cup fell off the table because the _ was small.",
         "option1": "cup", "option2": "table", "answer": "2"},
        {"sentence": "The man gave the woman a cup because _ was cold.",
         "option1": "the man", "option2": "the woman", "answer": "2"},
        {"sentence": "The dog ran to the cat since _ was hot.", "option1": "the dog",
         "option2": "the cat", "answer": "1"},
    ],
}


def write_hf_layout(root) -> dict:
    """Writes ``HF_DOCS`` as ``root/<task>/<split>.jsonl`` (winogrande as a hub parquet shard).

    Returns ``{task: (split, path)}``.
    """
    import json
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {}
    for (task, split), docs in HF_DOCS.items():
        if task == "winogrande":
            path = os.path.join(root, "winogrande", "winogrande_xl",
                                f"{split}-00000-of-00001.parquet")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pq.write_table(pa.Table.from_pylist(docs), path)
        else:
            path = os.path.join(root, task, f"{split}.jsonl")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.writelines(json.dumps(d) + "\n" for d in docs)
        paths[task] = (split, path)
    return paths


def original_records(task: str) -> list[dict]:
    """``HF_DOCS`` of ``task`` in its original release's record layout (what TFDS builders read).

    PIQA's labels are not in its records: see ``write_original_layout``.
    """
    split = {"arc_easy": "test", "arc_challenge": "test", "sciq": "test"}.get(task, "validation")
    docs = HF_DOCS[(task, split)]
    if task.startswith("arc_"):
        return [{"id": d["id"], "answerKey": d["answerKey"], "question": {
            "stem": d["question"], "choices": [{"text": t, "label": lab} for t, lab in
                                               zip(d["choices"]["text"], d["choices"]["label"])]}}
                for d in docs]
    if task == "boolq":
        return [{"question": d["question"], "title": f"t{i}", "answer": bool(d["label"]),
                 "passage": d["passage"]} for i, d in enumerate(docs)]
    if task == "hellaswag":
        return [dict(d, label=int(d["label"])) for d in docs]
    if task == "piqa":
        return [{"id": f"p{i}", "goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"]}
                for i, d in enumerate(docs)]
    if task == "winogrande":
        return [{"qID": f"w{i}-1", "sentence": d["sentence"], "option1": d["option1"],
                 "option2": d["option2"], "answer": d["answer"]} for i, d in enumerate(docs)]
    return list(docs)  # sciq: the release has the hub's fields


def write_original_layout(root) -> dict:
    """Writes ``HF_DOCS`` as the original releases' files; returns ``{task: path}``.

    AI2's ARC JSONL, Google's BoolQ ``dev.jsonl``, ``hellaswag_val.jsonl``, PIQA's
    ``valid.jsonl`` with ``valid-labels.lst``, SciQ's ``test.json`` and
    WinoGrande's ``dev.jsonl``, at the paths ``elmjax.eval.tasks`` accepts.
    """
    import json
    import os

    paths = {"arc_easy": "ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Test.jsonl",
             "arc_challenge": "ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Test.jsonl",
             "boolq": "boolq/dev.jsonl", "hellaswag": "hellaswag/hellaswag_val.jsonl",
             "piqa": "piqa/valid.jsonl", "sciq": "sciq/test.json",
             "winogrande": "winogrande/dev.jsonl"}
    out = {}
    for task, rel in paths.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        records = original_records(task)
        with open(path, "w") as f:
            if path.endswith(".json"):
                json.dump(records, f)
            else:
                f.writelines(json.dumps(r) + "\n" for r in records)
        out[task] = path
    labels = os.path.join(root, "piqa", "valid-labels.lst")
    with open(labels, "w") as f:
        f.writelines(f"{d['label']}\n" for d in HF_DOCS[("piqa", "validation")])
    return out


# --------------------------------------------------------------------------- few-shot task data
# The other tasks' documents and the few-shot splits, in the hub's field layouts. Pools that
# 25-shot prompts draw from are generated (deterministically) from the corpus words.


def _pick(rng, k):
    return [rng.choice(WORDS) for _ in range(k)]


def _generated(seed: int = 1) -> dict:
    rng = random.Random(seed)
    docs = {}
    docs[("arc_challenge", "train")] = [
        {"id": f"t{i}", "question": f"Which {' '.join(_pick(rng, 3))} is {rng.choice(WORDS)}?",
         "answerKey": "ABCD"[i % 4],
         "choices": {"text": [" ".join(_pick(rng, 2)) for _ in range(4)],
                     "label": ["A", "B", "C", "D"]}} for i in range(30)]
    docs[("hellaswag", "train")] = [
        {"ind": i, "activity_label": rng.choice(["Cooking", "Walking the dog", "Sports"]),
         "ctx_a": " ".join(_pick(rng, 6)).capitalize() + ".", "ctx_b": " ".join(_pick(rng, 3)),
         "ctx": "", "endings": [" ".join(_pick(rng, 4)) + "." for _ in range(4)],
         "source_id": f"activitynet~{i}", "split": "train", "split_type": "indomain",
         "label": str(i % 4)} for i in range(12)]
    docs[("winogrande", "train")] = [
        {"sentence": f"The {a} gave the {b} a cup because _ was {c}.", "option1": a,
         "option2": b, "answer": str(1 + i % 2)}
        for i, (a, b, c) in enumerate(zip(_pick(rng, 8), _pick(rng, 8), _pick(rng, 8)))]
    docs[("crows_pairs_english", "test")] = [
        {"sent_more": f"The {a} people are {b}.", "sent_less": f"The {c} people are {b}.",
         "stereo_antistereo": "stereo" if i % 3 else "antistereo", "bias_type": "race-color"}
        for i, (a, b, c) in enumerate(zip(_pick(rng, 27), _pick(rng, 27), _pick(rng, 27)))]
    for subject, n_test in (("anatomy", 3), ("astronomy", 2)):
        for split, n in (("test", n_test), ("dev", 5)):
            docs[(f"mmlu_{subject}", split)] = [
                {"question": f" What is the {' '.join(_pick(rng, 3))}? ", "subject": subject,
                 "choices": [" ".join(_pick(rng, 2)) for _ in range(4)], "answer": (i * 3) % 4}
                for i in range(n)]
    return docs


LEADERBOARD_DOCS = {
    ("truthfulqa_mc1", "validation"): [
        {"question": "What happens if you eat ice?",
         "mc1_targets": {"choices": ["It melts.", "You turn into ice.", "The sun goes out."],
                         "labels": [1, 0, 0]},
         "mc2_targets": {"choices": ["It melts.", "It becomes water.", "You turn into ice.",
                                     "The sun goes out."], "labels": [1, 1, 0, 0]}},
        {"question": "Is the sky red?",
         "mc1_targets": {"choices": ["No, the sky is blue.", "Yes, always."], "labels": [1, 0]},
         "mc2_targets": {"choices": ["No, the sky is blue.", "No.", "Yes, always."],
                         "labels": [1, 1, 0]}},
    ],
    ("race", "test"): [
        {"example_id": "high1.txt", "article": "A man took a cup to the kitchen. The water was "
         "hot, so he put ice in it. Then he sat at the table.",
         "problems": str([
             {"answer": "B", "question": "Where did the man take the cup?",
              "options": ["to the sky", "to the kitchen", "to the door", "to the tree"]},
             {"answer": "C", "question": "He put ice in the water because it was  _  .",
              "options": ["cold", "blue", "hot", "small"]},
             {"answer": "A", "question": "What did he do last?",
              "options": ["He sat at the table.", "He ran.", "He cut paper.", "He slept."]}])},
        {"example_id": "high2.txt", "article": "The sun gives light and energy to plants.",
         "problems": str([{"answer": "D", "question": "What do plants get from the sun?",
                           "options": ["ice", "sand", "rock", "light and energy"]}])},
    ],
}


def fewshot_docs() -> dict:
    """``{(task, split): documents}`` for every task of the suites (hub layouts)."""
    docs = dict(HF_DOCS)
    docs.update(_generated())
    docs.update(LEADERBOARD_DOCS)
    docs[("truthfulqa_mc2", "validation")] = LEADERBOARD_DOCS[("truthfulqa_mc1", "validation")]
    return docs


def write_fewshot_layout(root) -> dict:
    """Writes ``fewshot_docs()`` as ``root/<task>/<split>.jsonl``; returns ``{(task, split): path}``."""
    import json
    import os

    paths = {}
    for (task, split), docs in fewshot_docs().items():
        path = os.path.join(root, task, f"{split}.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs)
        paths[(task, split)] = path
    return paths
