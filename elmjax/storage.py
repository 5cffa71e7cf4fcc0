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

Everything elmjax reads or writes outside Orbax goes through the functions below (Orbax's own
``epath``/TensorStore paths are set up here too, :func:`configure_emulators`). Object stores
use fsspec with the client library of an optional extra: ``gs://`` needs ``elmjax[gcs]``
(gcsfs), ``s3://`` needs ``elmjax[s3]`` (s3fs); each is imported only when such a path is used.
Endpoints and credentials come from the clients' standard environment variables
(``STORAGE_EMULATOR_HOST``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...); failures become one-line :class:`StorageError` messages that name
the extra, the variable, the bucket or the retries, never a credential.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import glob as glob_lib
import importlib.util
import io
import logging
import os
import shutil
import tempfile
import threading
import time

log = logging.getLogger("elmjax.storage")
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


# --------------------------------------------------------------------------- object stores

# scheme -> (client module, setup.cfg extra, where credentials come from)
CLIENTS = {
    "gs": ("gcsfs", "gcs", "GOOGLE_APPLICATION_CREDENTIALS (or `gcloud auth application-default "
           "login`)"),
    "s3": ("s3fs", "s3", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"),
}
RETRIES = 4  # tries of one ranged read before a dropped connection becomes an error
CHUNK_BYTES = 8 << 20  # one ranged read of a remote shard
READ_AHEAD_CHUNKS = 4  # ranges of an open remote shard fetched ahead of the reader
PREFETCH_FILES = 2  # shards of a source opened (first range fetched) before they are read
IO_THREADS = 16  # concurrent ranged reads per process, over all open shards

_pool = None
_pool_lock = threading.Lock()
_listings: dict = {}  # glob pattern -> [(path, size)]: each pattern listed once per process
_sizes: dict = {}  # path -> size in bytes, from listings
_early: dict = {}  # path -> future of its first range (prefetch)


class StorageError(RuntimeError):
    """An object-store failure explained in one line (missing extra or credentials, no such
    bucket, access denied, connection lost after retries). Never carries credentials."""


def scheme(path) -> str:
    """``"gs"``, ``"s3"``, ... for a URI; ``""`` for a local path."""
    p = os.fspath(path)
    return p.split("://", 1)[0] if is_remote(p) else ""


def configure_emulators() -> None:
    """Points TensorStore's GCS driver at ``STORAGE_EMULATOR_HOST`` when that standard variable
    is set and ``TENSORSTORE_GCS_HTTP_URL`` is not, so checkpoints go where gcsfs goes.
    (s3fs reads ``AWS_ENDPOINT_URL`` itself; checkpoints pass it to TensorStore's S3 driver.)"""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host and "TENSORSTORE_GCS_HTTP_URL" not in os.environ:
        os.environ["TENSORSTORE_GCS_HTTP_URL"] = host if "://" in host else f"http://{host}"


def filesystem(path):
    """The fsspec filesystem for ``path`` (a URI or local path).

    Raises :class:`StorageError` naming the ``pip install`` extra when the scheme's client
    library (gcsfs, s3fs) is missing; imports it only then.
    """
    import fsspec

    s = scheme(path)
    if not s:
        return fsspec.filesystem("file")
    if s not in CLIENTS:
        raise StorageError(f"{path}: unsupported scheme {s}:// (use a local path, gs:// or s3://)")
    module, extra, _ = CLIENTS[s]
    if importlib.util.find_spec(module) is None:
        raise StorageError(f"{path}: {s}:// paths need the '{extra}' extra "
                           f"(pip install 'elmjax[{extra}]', which installs {module})")
    configure_emulators()
    if s == "gs" and os.environ.get("STORAGE_EMULATOR_HOST"):
        logging.getLogger("gcsfs").addFilter(_quiet_emulator)
    return fsspec.filesystem(s)


def _quiet_emulator(record) -> bool:
    """Drops gcsfs's per-call warning that an emulator has no bucket-type API."""
    return not str(record.msg).startswith("Could not determine bucket type")


def _bucket(path: str) -> str:
    return path.split("://", 1)[1].split("/", 1)[0]


def _is_connection_error(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"ConnectionError", "TimeoutError", "ClientConnectionError",
                         "ClientPayloadError", "ServerDisconnectedError", "EndpointConnectionError",
                         "ConnectionClosedError", "ReadTimeoutError", "IncompleteRead",
                         "ResponseStreamingError", "TransportError"})


def explain(e: BaseException, path) -> StorageError | None:
    """The one-line :class:`StorageError` for a client exception on ``path``, or None when
    ``e`` is not a storage failure (e.g. a plain missing file, left to the caller)."""
    p, s = os.fspath(path), scheme(path)
    names = {c.__name__ for c in type(e).__mro__}
    if s and names & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError",
                      "RefreshError"}:
        return StorageError(f"{p}: no usable {s}:// credentials; set {CLIENTS[s][2]}")
    text = str(e)
    if s and ("NoSuchBucket" in text or "bucket does not exist" in text.lower()
              or "Bucket Not Found" in text):
        return StorageError(f"{p}: bucket '{_bucket(p)}' does not exist")
    if isinstance(e, PermissionError) or names & {"Forbidden", "AccessDenied"} or (
            s and ("AccessDenied" in text or "403" in text.split(":", 1)[0])):
        return StorageError(f"{p}: access denied by the server; check that the credentials in "
                            f"{CLIENTS.get(s, ('', '', 'the environment'))[2]} may use bucket "
                            f"'{_bucket(p)}'" if s else f"{p}: permission denied")
    if _is_connection_error(e):
        return StorageError(f"{p}: connection to the {s or 'file'} server lost "
                            f"({type(e).__name__}) after {RETRIES} tries")
    return None


def _call(path, fn, *args, **kwargs):
    """``fn(*args)`` with client failures on ``path`` turned into :class:`StorageError`; a
    missing bucket is told apart from a missing object."""
    try:
        return fn(*args, **kwargs)
    except FileNotFoundError as e:
        p = os.fspath(path)
        if is_remote(p) and not _bucket_exists(p):
            raise StorageError(f"{p}: bucket '{_bucket(p)}' does not exist") from None
        raise FileNotFoundError(f"{p}: no such file") from e
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - translated or re-raised as it was
        err = explain(e, path)
        if err is None:
            raise
        raise err from None


def _no_bucket(path: str) -> bool:
    """False when ``path``'s bucket exists; raises :class:`StorageError` when it does not (a
    missing bucket is a wrong URI or account, never just a file not written yet)."""
    if _bucket_exists(path):
        return False
    raise StorageError(f"{path}: bucket '{_bucket(path)}' does not exist")


def _bucket_exists(path: str) -> bool:
    fs = filesystem(path)
    try:
        return bool(fs.exists(f"{scheme(path)}://{_bucket(path)}"))
    except Exception:  # noqa: BLE001 - unknown: do not claim the bucket is missing
        return True


def exists(path) -> bool:
    """Whether ``path`` names a file or directory (a prefix with objects under it)."""
    p = os.fspath(path)
    if not is_remote(p):
        return os.path.exists(p)
    fs = filesystem(p)
    fs.invalidate_cache(p)  # another process (or host) may have written it since
    return bool(_call(p, fs.exists, p)) or _no_bucket(p)


def isfile(path) -> bool:
    """Whether ``path`` names a file (an object)."""
    p = os.fspath(path)
    if not is_remote(p):
        return os.path.isfile(p)
    fs = filesystem(p)
    fs.invalidate_cache(p)
    return bool(_call(p, fs.isfile, p)) or _no_bucket(p)


def open_file(path, mode: str = "rb"):
    """Opens a file, local or remote, for reading or writing (``"rb"``, ``"r"``, ``"wb"``,
    ``"w"``); remote writes become visible when the file is closed."""
    p = os.fspath(path)
    if not is_remote(p):
        if "w" in mode:
            os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        return open(p, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    return _call(p, filesystem(p).open, p, mode)


def read_bytes(path) -> bytes:
    """The whole file as it is now (remote: in ranged reads, each retried on a dropped
    connection)."""
    p = os.fspath(path)
    if not is_remote(p):
        with open(p, "rb") as f:
            return f.read()
    with open_shard(p, fresh=True) as f:
        return f.read()


def write_bytes(path, data: bytes) -> None:
    """Writes (replaces) a whole file; creates local parent directories."""
    with open_file(path, "wb") as f:
        f.write(data)


def makedirs(path) -> None:
    """Creates a local directory (and parents); nothing for object stores, which have none."""
    p = os.fspath(path)
    if not is_remote(p):
        os.makedirs(p, exist_ok=True)


def join(directory, name: str) -> str:
    """``directory/name`` for a local directory or a URI prefix."""
    d = os.fspath(directory)
    return f"{d.rstrip('/')}/{name}" if is_remote(d) else os.path.join(d, name)


def tree_size(path) -> int:
    """Total bytes of the files under a directory (local or a remote prefix)."""
    p = os.fspath(path)
    if not is_remote(p):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(p) for f in files)
    return int(_call(p, filesystem(p).du, p))


def list_files(pattern) -> list[str]:
    """The files a glob (or a plain path) names, sorted; ``**`` spans directories.

    A remote pattern is listed once per process (one prefix listing, which also records each
    object's size for :func:`open_shard`) and remembered: data shards do not change under a
    run. Local patterns are listed every time.
    """
    p = os.fspath(pattern)
    if not is_remote(p):
        if glob_lib.has_magic(p):
            return sorted(m for m in glob_lib.glob(p, recursive=True) if os.path.isfile(m))
        return [p] if os.path.isfile(p) else []
    if p not in _listings:
        fs, s = filesystem(p), scheme(p)
        if glob_lib.has_magic(p):
            found = _call(p, fs.glob, p, detail=True)
        else:
            found = {p: _call(p, fs.info, p)} if _call(p, fs.isfile, p) else {}
        rows = sorted((f"{s}://{k.split('://', 1)[-1]}", int(v.get("size") or 0))
                      for k, v in found.items() if v.get("type", "file") == "file")
        if not rows and glob_lib.has_magic(p) and not _bucket_exists(p):
            raise StorageError(f"{p}: bucket '{_bucket(p)}' does not exist")
        _listings[p] = rows
        _sizes.update(rows)
    return [path for path, _ in _listings[p]]


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(IO_THREADS, "elmjax-storage")
        return _pool


def _read_range(fs, path: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a remote object; a dropped connection or a short answer is
    retried (``RETRIES`` tries, backing off 0.2, 0.4, 0.8 s) before it becomes a StorageError."""
    for attempt in range(RETRIES):
        try:
            data = fs.cat_file(path, start=start, end=end)
            if len(data) == end - start:
                return data
            err = ConnectionError(f"short read: {len(data)} of {end - start} bytes")
        except Exception as e:  # noqa: BLE001 - only connection failures are retried
            if not _is_connection_error(e):
                raise
            err = e
        if attempt + 1 < RETRIES:
            log.warning("%s: read of bytes %d-%d failed (%s); retrying", path, start, end,
                        type(err).__name__)
            time.sleep(0.2 * 2 ** attempt)
    raise StorageError(f"{path}: connection to the {scheme(path)} server lost "
                       f"({type(err).__name__}) after {RETRIES} tries")


class _ReadAhead(io.RawIOBase):
    """A remote object read in ``CHUNK_BYTES`` ranges, ``READ_AHEAD_CHUNKS`` of them fetched
    ahead of the read position by the shared I/O threads; seekable (parquet footers)."""

    def __init__(self, fs, path: str, size: int, first=None):
        super().__init__()
        self._fs, self._path, self._size, self._pos = fs, path, size, 0
        self._chunks = {0: first} if first is not None else {}

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _chunk(self, i: int):
        last = (self._size - 1) // CHUNK_BYTES
        for j in range(i, min(i + READ_AHEAD_CHUNKS, last) + 1):
            if j not in self._chunks:
                start = j * CHUNK_BYTES
                self._chunks[j] = _executor().submit(
                    _read_range, self._fs, self._path, start, min(start + CHUNK_BYTES, self._size))
        for j in [j for j in self._chunks if j < i or j > i + READ_AHEAD_CHUNKS]:
            self._chunks.pop(j).cancel()
        return self._chunks[i].result()

    def readinto(self, b) -> int:
        if self._pos >= self._size:
            return 0
        i = self._pos // CHUNK_BYTES
        data = self._chunk(i)
        off = self._pos - i * CHUNK_BYTES
        n = min(len(b), len(data) - off)
        b[:n] = data[off:off + n]
        self._pos += n
        return n

    def close(self):
        for f in self._chunks.values():
            f.cancel()
        self._chunks.clear()
        super().close()


def open_shard(path, fresh: bool = False):
    """Opens a data file for reading: a local file as it is; a remote one with read-ahead
    (ranged reads on background threads, each retried on a dropped connection; the first
    range may already be in flight from :func:`prefetch`). The size comes from the listing
    that found the file (:func:`list_files`) unless ``fresh`` (a file that may have changed).
    Returns a binary file object."""
    p = os.fspath(path)
    if not is_remote(p):
        return open(p, "rb")
    fs = filesystem(p)
    size = None if fresh else _sizes.get(p)
    if size is None:
        fs.invalidate_cache(p)
        size = int(_call(p, fs.size, p))
    first = None if fresh else _early.pop(p, None)
    return io.BufferedReader(_ReadAhead(fs, p, size, first), CHUNK_BYTES)


def prefetch(paths) -> None:
    """Starts fetching the first range of each remote file in ``paths`` (the shards a reader
    opens next), so several files are in flight per host; local paths are ignored."""
    for p in map(os.fspath, paths):
        if is_remote(p) and p not in _early and p in _sizes and _sizes[p] > 0:
            if len(_early) >= 16:  # bounded (16 ranges): drop the oldest unclaimed prefetch
                _early.pop(next(iter(_early))).cancel()
            _early[p] = _executor().submit(_read_range, filesystem(p), p, 0,
                                           min(CHUNK_BYTES, _sizes[p]))


class LocalCopies:
    """Remote files copied to a local temporary directory (for readers that need a local path:
    safetensors, SentencePiece, TFDS); the directory is removed when the process exits."""

    _dir = None

    @classmethod
    def _local(cls, uri: str) -> str:
        if cls._dir is None:
            cls._dir = tempfile.mkdtemp(prefix="elmjax-remote-")
            atexit.register(shutil.rmtree, cls._dir, True)
        return os.path.join(cls._dir, scheme(uri), uri.split("://", 1)[1])

    @classmethod
    def tree(cls, prefix) -> str:
        """A local directory with every file under ``prefix`` (``prefix`` itself when local)."""
        p = os.fspath(prefix).rstrip("/")
        for f in list_files(f"{p}/**") if is_remote(p) else ():
            cls.get(f)
        return cls._local(p) if is_remote(p) else p

    @classmethod
    def get(cls, path) -> str:
        """A local path with ``path``'s bytes (``path`` itself when local)."""
        p = os.fspath(path)
        if not is_remote(p):
            return p
        local = cls._local(p)
        if not os.path.exists(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local + ".part", "wb") as f:
                f.write(read_bytes(p))
            os.replace(local + ".part", local)
        return local


class RewrittenFile:
    """An appendable log file on an object store (which has no append): every byte written is
    kept, and the whole object is rewritten on :meth:`sync`, on :meth:`flush` at most every
    ``min_interval_s``, and on :meth:`close`. Starts from the object's current contents."""

    def __init__(self, path, min_interval_s: float = 15.0, keep_existing: bool = True):
        self.path = os.fspath(path)
        self.min_interval_s = min_interval_s
        self._buf = bytearray()
        if keep_existing and isfile(self.path):
            self._buf += read_bytes(self.path)
        self._synced_len, self._last = len(self._buf), 0.0
        self.closed = False

    def write(self, data) -> None:
        self._buf += data.encode("utf-8") if isinstance(data, str) else data

    def flush(self) -> None:
        if time.monotonic() - self._last >= self.min_interval_s:
            self.sync()

    def sync(self) -> None:
        """Rewrites the object now (when anything was written since the last rewrite)."""
        if len(self._buf) != self._synced_len:
            write_bytes(self.path, bytes(self._buf))
            self._synced_len = len(self._buf)
        self._last = time.monotonic()

    def close(self) -> None:
        if not self.closed:
            self.sync()
            self.closed = True
