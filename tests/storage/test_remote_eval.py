"""Evaluation data in buckets: task files under ``gs://`` and ``s3://`` give the examples the
same local directory gives; a missing split names the bucket paths it tried. (Prepared TFDS
datasets in a bucket: ``tests/eval/test_tfds_tasks.py``.)"""

import os

import pytest

from elmjax.eval import tasks
from tests.eval.eval_data import write_hf_layout
from tests.eval.test_tfds_tasks import sort
from tests.storage.conftest import upload_tree


@pytest.mark.parametrize("scheme", ("gs", "s3"))
def test_task_files_in_a_bucket_read_like_the_local_directory(stores, tmp_path, scheme):
    local = str(tmp_path / "tasks")
    written = write_hf_layout(local)
    uri = f"{scheme}://evaldata/hub"
    upload_tree(local, uri)
    assert "winogrande" in written  # its split is a parquet shard, the others JSON lines
    for name in written:
        task = tasks.get_task(name)
        assert sort(task.examples(uri)) == sort(task.examples(local)), name


def test_a_split_missing_from_a_bucket_names_the_uris_tried(stores):
    upload_tree(os.path.dirname(__file__), "gs://evaldata/empty")  # a bucket without task data
    with pytest.raises(tasks.TaskDataError) as e:
        tasks.get_task("piqa").examples("gs://evaldata/empty")
    assert "gs://evaldata/empty/piqa/" in str(e.value)
