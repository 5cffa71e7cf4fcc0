"""Reading a task's split from local files or a prepared tensorflow-datasets directory.

Under the data directory ``D`` a task's split is looked for first as files: its
own ``D/<task>/<split>.{jsonl,json,parquet}`` (or ``<split>-*.parquet`` shards,
concatenated) in the Hugging Face hub's field layout, then the task's other
accepted layouts (hub snapshots, original releases). When no file matches, ``D``
is read as a tensorflow-datasets data directory: the task's dataset prepared
there, ``D/<dataset>[/<config>]/<version>/`` (the highest version), is opened with
``tfds.builder_from_directory`` (no builder code, and no TensorFlow for the
``array_record`` format). A split found nowhere raises ``TaskDataError`` naming
every path that was tried and the public source of the data.

``D`` may be a local directory or a ``gs://`` / ``s3://`` prefix (``elmjax.storage``): task
files are listed and read there directly; a prepared TFDS dataset is copied to a local
temporary directory first (TFDS's readers want local files; eval datasets are megabytes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from typing import Callable

import numpy as np

from elmjax import storage


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
    note: added to the missing-data message; fewshot_split: the TFDS split holding
    the task's few-shot split (default: the same name).
    """

    name: str
    split: str
    convert: Callable[[dict], dict] = _same
    warning: str = ""
    note: str = ""
    fewshot_split: str | None = None


# --------------------------------------------------------------------------- reading


def _read_file(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_file(path, "rb") as f:
            return pq.read_table(f).to_pylist()
    with storage.open_file(path, "r") as f:
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
    if not storage.isfile(labels_path):
        return docs
    with storage.open_file(labels_path, "r") as f:
        labels = [int(x) for x in f.read().split()]
    if len(labels) != len(docs):
        raise TaskDataError(f"{labels_path}: {len(labels)} labels for {len(docs)} records in {path}")
    return [dict(d, label=y) for d, y in zip(docs, labels)]


def read_docs(task, data_dir: str, split: str | None = None) -> list[dict]:
    """Raw records of ``task``'s ``split`` (default: its evaluation split) under ``data_dir``.

    task: an ``elmjax.eval.tasks.Task``. Files are tried in ``task.patterns(split)``
    order (the first pattern that matches wins; its files are concatenated), then
    the task's TFDS datasets. Records failing ``task.keep`` are dropped. Raises
    ``TaskDataError`` naming the accepted paths when none exists.
    """
    split = split or task.split
    docs = _read_split(task, data_dir, split)
    return [d for d in docs if task.keep(d)] if task.keep is not None else docs


def _read_split(task, data_dir: str, split: str) -> list[dict]:
    patterns = task.patterns(split)
    for pattern in patterns:
        paths = storage.list_files(storage.join(data_dir, pattern))
        if not paths:
            continue
        docs = []
        for path in paths:
            try:
                docs.extend(_attach_labels(path, _read_file(path)))
            except (OSError, ValueError, storage.StorageError) as e:
                raise TaskDataError(f"{task.name}: cannot read {path}: {e}") from None
        return docs
    sources = [s if split == task.split else
               dataclasses.replace(s, split=s.fewshot_split or split) for s in task.tfds]
    for source in sources:
        version_dir = _tfds_version_dir(data_dir, source.name)
        if version_dir is not None:
            return _read_tfds(task, source, version_dir)
    accepted = "\n  ".join(storage.join(data_dir, p) for p in patterns)
    role = "" if split == task.split else " (the few-shot examples)"
    message = (f"{task.name}: no data for its '{split}' split{role} under {data_dir!r}. Put "
               f"the '{split}' split of {task.source} at one of:\n  {accepted}\n")
    if sources:
        searched = "\n  ".join(
            f"{s.name}, split '{s.split}': {storage.join(data_dir, s.name + '/<version>')}"
            f"/dataset_info.json{' (' + s.note + ')' if s.note else ''}" for s in sources)
        message += (f"or prepare one of these tensorflow-datasets datasets there (data_dir="
                    f"{data_dir!r}, file_format='array_record'):\n  {searched}\n")
    raise TaskDataError(message + "(nothing is downloaded at run time)")


def _tfds_version_dir(data_dir: str, name: str) -> str | None:
    """``data_dir/<dataset>[/<config>]/<highest version>`` with a ``dataset_info.json``, as a
    local directory (a remote one copied to a local temporary directory); or None."""
    root = storage.join(data_dir, name)
    infos = {}
    for info in storage.list_files(storage.join(root, "*/dataset_info.json")):
        version = info.rstrip("/").split("/")[-2]
        if re.fullmatch(r"\d+\.\d+\.\d+", version):
            infos[tuple(map(int, version.split(".")))] = info[:-len("/dataset_info.json")]
    if not infos:
        return None
    return storage.LocalCopies.tree(infos[max(infos)])


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


def _read_tfds(task, source: TfdsSource, version_dir: str) -> list[dict]:
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

