"""Buckets on the object-store servers (the session-wide ``stores`` fixture of
``tests/conftest.py``): helpers to fill them, and one holding the quickstart data."""

import os

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_bucket(uri: str) -> None:
    from elmjax import storage

    fs = storage.filesystem(uri)
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    if not fs.exists(f"{storage.scheme(uri)}://{bucket}"):
        fs.mkdir(f"{storage.scheme(uri)}://{bucket}")


def upload_tree(local: str, uri: str) -> None:
    """Copies a local directory's files to ``uri`` (a bucket prefix), bucket made if needed."""
    from elmjax import storage

    make_bucket(uri)
    for d, _, files in os.walk(local):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")
            with open(os.path.join(d, f), "rb") as src:
                storage.write_bytes(f"{uri.rstrip('/')}/{rel}", src.read())


@pytest.fixture(scope="session")
def quickstart_data(stores):
    """The quickstart mixture, its sample shards and the tokenizer on s3://data/quickstart."""
    uri = "s3://data/quickstart"
    upload_tree(os.path.join(ROOT, "data_mixtures", "samples"), f"{uri}/samples")
    with open(os.path.join(ROOT, "data_mixtures", "quickstart.yaml"), "rb") as f:
        from elmjax import storage

        storage.write_bytes(f"{uri}/quickstart.yaml", f.read())
    return uri
