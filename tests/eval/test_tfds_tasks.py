"""The zero-shot tasks read from prepared tensorflow-datasets (array_record) directories.

The datasets are built here by the real TFDS builders (their feature specs, names and
``_generate_examples``), reading the hand-written items from original-release files this
module writes instead of downloading them.
"""

import importlib.util
import json
import os
import shutil
import socket
import sys

import numpy as np
import pytest

from elmjax.eval import harness, tasks, zero_shot_tasks
from tests.eval.eval_data import HF_DOCS, fewshot_docs, write_original_layout

TASK_NAMES = list(zero_shot_tasks.TASKS)


def _local_builder(builder_cls, name, splits):
    """``builder_cls`` generating ``splits`` ({split: _generate_examples kwargs}) from files."""
    return type(builder_cls.__name__, (builder_cls,), {
        "name": name,
        "pkg_dir_path": builder_cls._get_pkg_dir_path(),  # the real builder's metadata files
        "_split_generators": lambda self, dl_manager: {
            split: self._generate_examples(**kwargs) for split, kwargs in splits.items()},
    })


def _no_network(*args, **kwargs):
    raise AssertionError("a TFDS build tried to open a network connection")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A TFDS data directory with every task's split, prepared in array_record format."""
    import tensorflow_datasets as tfds
    from etils import epath
    from tensorflow_datasets.datasets.ai2_arc import ai2_arc_dataset_builder as ai2_arc
    from tensorflow_datasets.datasets.bool_q import bool_q_dataset_builder as bool_q
    from tensorflow_datasets.datasets.piqa import piqa_dataset_builder as piqa
    from tensorflow_datasets.text import hellaswag, super_glue, winogrande

    src = str(tmp_path_factory.mktemp("releases"))
    files = write_original_layout(src)
    arc_train = os.path.join(src, "ARC-Challenge-Train.jsonl")
    with open(arc_train, "w") as f:
        for d in fewshot_docs()[("arc_challenge", "train")]:
            f.write(json.dumps({"id": d["id"], "answerKey": d["answerKey"], "question": {
                "stem": d["question"], "choices": [{"text": t, "label": lab} for t, lab in zip(
                    d["choices"]["text"], d["choices"]["label"])]}}) + "\n")
    super_glue_val = os.path.join(src, "BoolQ", "val.jsonl")
    os.makedirs(os.path.dirname(super_glue_val))
    with open(super_glue_val, "w") as f:
        for doc in HF_DOCS[("boolq", "validation")]:
            f.write(json.dumps({"question": doc["question"], "passage": doc["passage"],
                                "idx": doc["idx"], "label": bool(doc["label"])}) + "\n")

    with tfds.core.registered.skip_registration():  # the real builders hold these names
        class Sciq(tfds.core.GeneratorBasedBuilder):
            """What a user prepares for sciq (not in the catalog): the hub's fields."""

            VERSION = tfds.core.Version("1.0.0")
            FIELDS = ("question", "distractor1", "distractor2", "distractor3", "correct_answer",
                      "support")

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                    {k: tfds.features.Text() for k in self.FIELDS}))

            def _split_generators(self, dl_manager):
                return {"test": self._generate_examples(files["sciq"])}

            def _generate_examples(self, path):
                with open(path) as f:
                    for i, doc in enumerate(json.load(f)):
                        yield i, {k: doc[k] for k in self.FIELDS}

        builders = [
            (_local_builder(ai2_arc.Builder, "ai2_arc", {"test": {"filepath": files["arc_easy"]}}),
             "ARC-Easy"),
            (_local_builder(ai2_arc.Builder, "ai2_arc",
                            {"test": {"filepath": files["arc_challenge"]},
                             "train": {"filepath": arc_train}}), "ARC-Challenge"),
            (_local_builder(bool_q.Builder, "bool_q",
                            {"validation": {"file_path": epath.Path(files["boolq"])}}), None),
            (_local_builder(super_glue.SuperGlue, "super_glue", {"validation": {
                "data_file": super_glue_val, "split": "validation"}}), "boolq"),
            (_local_builder(hellaswag.Hellaswag, "hellaswag",
                            {"validation": {"filepath": files["hellaswag"]}}), None),
            (_local_builder(piqa.Builder, "piqa", {"validation": {
                "data_path": files["piqa"],
                "label_path": os.path.join(os.path.dirname(files["piqa"]), "valid-labels.lst")}}),
             None),
            (_local_builder(winogrande.Winogrande, "winogrande",
                            {"validation": {"filepath": files["winogrande"]}}), None),
            (Sciq, None),
        ]
    root = str(tmp_path_factory.mktemp("tfds"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        # SuperGlue._info names its idx dtype tf.int32; TensorFlow is not installed.
        mp.setattr(super_glue, "tf", type("tf", (), {"int32": np.int32}))
        for cls, config in builders:
            kwargs = {"config": config} if config else {}
            cls(data_dir=root, file_format="array_record", **kwargs).download_and_prepare()
    return root


def sort(examples):
    return sorted(examples, key=repr)


@pytest.mark.parametrize("name", [n for n in TASK_NAMES if n != "hellaswag"])
def test_tfds_examples_equal_the_local_files(tfds_dir, task_data, name):
    task = tasks.get_task(name)
    assert not any(os.path.exists(os.path.join(tfds_dir, p)) for p in task.patterns())
    from_tfds = task.examples(tfds_dir)
    assert sort(from_tfds) == sort(task.examples(task_data[0]))


def test_boolq_reads_super_glue_when_bool_q_is_absent(tfds_dir, task_data, tmp_path):
    shutil.copytree(os.path.join(tfds_dir, "super_glue"), tmp_path / "super_glue")
    task = tasks.get_task("boolq")
    assert sort(task.examples(str(tmp_path))) == sort(task.examples(task_data[0]))


def test_tfds_datasets_in_a_bucket_read_like_the_local_directory(stores, tfds_dir):
    from tests.storage.conftest import upload_tree

    uri = "s3://evaldata/tfds"
    upload_tree(tfds_dir, uri)
    for name in TASK_NAMES:
        if name == "hellaswag":
            continue  # warns about its capitalisation; same records either way
        task = tasks.get_task(name)
        assert sort(task.examples(uri)) == sort(task.examples(tfds_dir)), name


def test_tfds_hellaswag_differs_only_in_capitalisation(tfds_dir, task_data):
    task = tasks.get_task("hellaswag")
    with pytest.warns(UserWarning) as caught:
        from_tfds = {ex.choices: ex for ex in task.examples(tfds_dir)}
    assert [str(w.message) for w in caught if "hellaswag" in str(w.message)] == [
        f"hellaswag read from TFDS ({os.path.join(tfds_dir, 'hellaswag', '1.1.0')}): "
        + tasks.HELLASWAG_TFDS_WARNING]
    hub = task.examples(task_data[0])
    assert len(from_tfds) == len(hub) == len(HF_DOCS[("hellaswag", "validation")])
    differ = 0
    for doc, want in zip(HF_DOCS[("hellaswag", "validation")], hub):
        got = from_tfds[want.choices]
        assert got.gold == want.gold
        # lm-eval ends the context with ctx_b.capitalize(); TFDS's context keeps ctx_b as it was.
        capitalised = doc["ctx_b"].capitalize()
        hub_context = want.requests[0][0]
        assert hub_context.endswith(capitalised)
        expected = hub_context[:len(hub_context) - len(capitalised)] + doc["ctx_b"]
        assert got.requests == tuple((expected, cont) for _, cont in want.requests)
        differ += got != want
    assert differ == 2  # "he" and "SHE puts ..."; the WikiHow record (empty ctx_b) is equal


def test_evaluator_gives_the_same_accuracies(tfds_dir, task_data, tiny_lm, tokenizer_path):
    cfg, params = tiny_lm
    with pytest.warns(UserWarning, match="capitalisation"):
        from_tfds = harness.evaluate(cfg, params, tokenizer_path, TASK_NAMES, tfds_dir)
    from_files = harness.evaluate(cfg, params, tokenizer_path, TASK_NAMES, task_data[0])
    assert from_tfds.keys() == from_files.keys()
    for key, value in from_files.items():
        if key.startswith("hellaswag/"):
            continue  # its prompts differ (see above)
        if "stderr" in key:
            assert from_tfds[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
        else:
            assert from_tfds[key] == value, key


def test_missing_tfds_dataset_names_what_was_searched(tmp_path):
    with pytest.raises(tasks.TaskDataError) as e:
        tasks.get_task("boolq").examples(str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "boolq", "dev.jsonl") in msg
    for name in ("bool_q", "super_glue/boolq"):
        assert f"{name}, split 'validation': {os.path.join(str(tmp_path), name, '<version>')}" \
            in msg
    with pytest.raises(tasks.TaskDataError, match="not in the TFDS catalog"):
        tasks.get_task("sciq").examples(str(tmp_path))


def test_local_files_take_precedence(tfds_dir, task_data, tmp_path):
    shutil.copytree(os.path.join(tfds_dir, "piqa"), tmp_path / "piqa")
    task = tasks.get_task("piqa")
    assert len(task.examples(str(tmp_path))) == 2  # from TFDS
    doc = HF_DOCS[("piqa", "validation")][1]
    (tmp_path / "piqa" / "validation.jsonl").write_text(json.dumps(doc) + "\n")
    assert task.examples(str(tmp_path)) == [task.examples(task_data[0])[1]]


def test_highest_version_missing_split_and_unreadable_records(tfds_dir, tmp_path):
    src = os.path.join(tfds_dir, "winogrande", "1.2.0")
    shutil.copytree(src, tmp_path / "winogrande" / "1.2.0")
    (tmp_path / "winogrande" / "0.9.0").mkdir()
    (tmp_path / "winogrande" / "0.9.0" / "dataset_info.json").write_text("not read")
    (tmp_path / "winogrande" / "incomplete.X_1.3.0").mkdir()
    task = tasks.get_task("winogrande")
    assert len(task.examples(str(tmp_path))) == 3
    other = tasks.Task("other", "train", "", ("acc",), (), task.normalise, task.build,
                       (tasks.TfdsSource("winogrande", "train"),))
    with pytest.raises(tasks.TaskDataError, match="has no 'train' split \\(it has: validation"):
        other.examples(str(tmp_path))
    wrong_fields = tasks.Task("other", "validation", "", ("acc",), (), task.normalise, task.build,
                              (tasks.TfdsSource("winogrande", "validation", lambda d: d["goal"]),))
    with pytest.raises(tasks.TaskDataError, match="cannot read the TFDS dataset at .*KeyError"):
        wrong_fields.examples(str(tmp_path))


def test_tfrecord_dataset_without_tensorflow(tfds_dir, tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed: tfrecord datasets are read through it")
    dst = tmp_path / "piqa" / "1.0.0"
    shutil.copytree(os.path.join(tfds_dir, "piqa", "1.0.0"), dst)
    info = json.loads((dst / "dataset_info.json").read_text())
    info["fileFormat"] = "tfrecord"
    (dst / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(tasks.TaskDataError, match="file_format='array_record'") as e:
        tasks.get_task("piqa").examples(str(tmp_path))
    assert "tfrecord" in str(e.value) and "install tensorflow" in str(e.value)


def test_tensorflow_datasets_is_imported_only_for_a_tfds_directory(tfds_dir, task_data, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    task = tasks.get_task("piqa")
    assert len(task.examples(task_data[0])) == 2
    with pytest.raises(tasks.TaskDataError, match="piqa, split 'validation'"):
        task.examples(str(tmp_path))
    shutil.copytree(os.path.join(tfds_dir, "piqa"), tmp_path / "piqa")
    with pytest.raises(tasks.TaskDataError, match="needs tensorflow-datasets"):
        task.examples(str(tmp_path))


def test_tfds_fewshot_split(tfds_dir, tmp_path):
    from tests.eval.eval_data import write_fewshot_layout

    local = str(tmp_path)
    write_fewshot_layout(local)
    # ARC-Challenge's shots come from the TFDS train split (in TFDS's order).
    arc = tasks.get_task("arc_challenge")
    shots = {ex.shot() for ex in arc.examples(local, split="train")}
    _, requests = arc.requests(tfds_dir, shots=3)
    for per_doc in requests:
        parts = per_doc[0][0].split("\n\n")
        assert len(parts) == 4 and all(p + "\n\n" in shots for p in parts[:3])
