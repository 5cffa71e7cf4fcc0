"""Where files live: local paths and object-store URIs (``gs://``, ``s3://``), in one place.

Every path a user gives (in a config or on the command line) is resolved once, by
:func:`resolve`, when the config is loaded or the command starts:

- a URI (``scheme://...``) is kept as it is;
- an absolute local path is kept;
- a relative local path is taken relative to the directory the command runs in when it
  exists there (a glob: when it matches something there), else relative to the repository
  that holds the ``elmjax`` package (so ``data_mixtures/...`` in the shipped configs works
  from any directory of a source checkout), else relative to the working directory (so a
  missing file is reported with its full path).

Consumers then use the resolved value as it is; nothing downstream looks for files again.
"""

from __future__ import annotations

import glob as glob_lib
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_remote(path) -> bool:
    """True for a URI with a scheme (``gs://b/x``, ``s3://b/x``), False for a local path."""
    return "://" in str(path)


def _exists(path: str) -> bool:
    if glob_lib.has_magic(path):
        return bool(glob_lib.glob(path, recursive=True))
    return os.path.exists(path)


def resolve(path, cwd: str | None = None) -> str:
    """The absolute path (or the URI) a user's ``path`` names; see the module docstring.

    ``cwd``: the directory relative paths start from (default: the process's working dir).
    Globs are resolved by where they match. An empty path stays empty.
    """
    p = os.fspath(path)
    if not p or is_remote(p):
        return p
    p = os.path.expanduser(p)
    if os.path.isabs(p):
        return os.path.normpath(p)
    here = os.path.abspath(os.path.join(cwd or os.getcwd(), p))
    if _exists(here):
        return here
    in_repo = os.path.normpath(os.path.join(REPO_ROOT, p))
    return in_repo if _exists(in_repo) else here


def resolve_list(paths: str, cwd: str | None = None) -> str:
    """:func:`resolve` on each entry of a comma-separated list; returns the list joined again."""
    return ",".join(resolve(x.strip(), cwd) for x in str(paths).split(",") if x.strip())



def output_path(path) -> str:
    """Where something is written (a workdir, an export directory): a URI as it is, a local
    path made absolute against the working directory (never looked up in the repository)."""
    p = os.fspath(path)
    if not p or is_remote(p):
        return p
    return os.path.abspath(os.path.expanduser(p))
