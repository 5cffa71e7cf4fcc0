"""Checkpoints that lose nothing: Orbax ``CheckpointManager`` over train state + data position.

Each checkpoint ``WORKDIR/checkpoints/STEP/`` holds three items:

- ``state``: the sharded train state ``{"step", "params", "opt_state"}`` (async, atomic);
- ``data``: every host's data-iterator position (grain's Orbax handler, one JSON per process);
- ``meta``: the resolved config, the tokenizer's SHA-256, the phase and the wall time.

A run restores onto any mesh: the target shardings come from the current config.

The workdir may be local, ``gs://`` or ``s3://``; Orbax writes array data through TensorStore's
native driver for the scheme and its small files through ``etils.epath``. For ``gs://`` Orbax
does this itself (``TENSORSTORE_GCS_HTTP_URL`` / ``STORAGE_EMULATOR_HOST`` for an emulator).
Orbax 0.12 builds TensorStore specs only for ``gs://``, so for ``s3://`` :func:`_orbax_s3`
teaches it TensorStore's ``s3`` driver (endpoint from ``AWS_ENDPOINT_URL``, region from
``AWS_DEFAULT_REGION``), and each checkpoint is committed by a ``commit_success.txt`` file
written last (S3 has no atomic directory rename), as Orbax does for GCS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from elmjax import config as config_lib
from elmjax import storage
from elmjax.model.schedule import layer_schedule

log = logging.getLogger("elmjax.checkpoint")

# Model keys that decide parameter shapes; a checkpoint differing in any of them is refused.
SHAPE_KEYS = ("num_layers", "model_dim", "head_dim", "vocab_size", "normalize_qk")


class IncompatibleCheckpointError(ValueError):
    """A checkpoint does not fit the current config (model shape or tokenizer differ)."""


class DamagedCheckpointError(ValueError):
    """No checkpoint of a run can be read (or one lacks what it should hold)."""


def checkpoint_dir(workdir) -> epath.Path:
    """``workdir/checkpoints`` as an absolute path (Orbax requires one; URLs stay as given).

    Raises ``storage.StorageError`` for a workdir whose client extra or bucket is missing
    (Orbax would create an S3 bucket that a typo named)."""
    workdir = storage.output_path(workdir)
    storage.filesystem(workdir)  # the client extra and emulator endpoints, before Orbax
    if storage.is_remote(workdir):
        storage.exists(workdir)  # raises for a bucket that does not exist
    if storage.scheme(workdir) == "s3":
        _orbax_s3()
    return epath.Path(workdir) / "checkpoints"


def _s3_kvstore(path: str) -> dict:
    """TensorStore's ``s3`` kvstore spec for ``s3://bucket/key``, from the standard variables."""
    bucket, _, key = path.removeprefix("s3://").partition("/")
    spec = {"driver": "s3", "bucket": bucket, "path": key,
            "aws_region": os.environ.get("AWS_DEFAULT_REGION")
            or os.environ.get("AWS_REGION") or "us-east-1"}
    if os.environ.get("AWS_ENDPOINT_URL"):
        spec["endpoint"] = os.environ["AWS_ENDPOINT_URL"]
    if os.environ.get("AWS_ACCESS_KEY_ID"):  # else TensorStore's default chain (profile, IMDS)
        spec["aws_credentials"] = {"type": "environment"}
    return spec


def _orbax_s3() -> None:
    """Makes Orbax build TensorStore ``s3`` specs for ``s3://`` paths, as it builds ``gcs``
    ones for ``gs://`` (three module functions of orbax-checkpoint 0.12; checked, not assumed)."""
    from orbax.checkpoint._src.path import gcs_utils
    from orbax.checkpoint._src.serialization import tensorstore_utils as tsu

    if getattr(tsu, "_elmjax_s3", False):
        return
    names = ("_use_gcs_driver", "_normalize_path")
    if not all(hasattr(tsu, n) for n in names) or not hasattr(gcs_utils, "get_kvstore_for_gcs"):
        raise storage.StorageError(
            f"checkpoints on s3:// need orbax-checkpoint 0.12 (this is {ocp.__version__}); use a "
            "gs:// or local workdir")
    use_gcs, normalize, gcs_kvstore = (tsu._use_gcs_driver, tsu._normalize_path,
                                       gcs_utils.get_kvstore_for_gcs)
    tsu._use_gcs_driver = lambda d: d.startswith("s3://") or use_gcs(d)
    tsu._normalize_path = lambda p: ("s3://" + normalize(p[5:]).lstrip("/")
                                     if p.startswith("s3://") else normalize(p))
    gcs_utils.get_kvstore_for_gcs = lambda p: _s3_kvstore(p) if p.startswith("s3://") else \
        gcs_kvstore(p)
    tsu._elmjax_s3 = True


def file_sha256(path) -> str | None:
    """SHA-256 of a file's bytes (None if there is no such file)."""
    if not storage.isfile(path):
        return None
    return hashlib.sha256(storage.read_bytes(path)).hexdigest()


def config_from_json(data: dict) -> ml_collections.ConfigDict:
    """Rebuilds a run config saved as JSON (lists back to tuples in the model section)."""
    cfg = ml_collections.ConfigDict(data)
    m = config_lib.model_config()
    for k, v in data["model"].items():
        m[k] = tuple(v) if isinstance(v, list) else v
    cfg.model = m
    return cfg


def _model_signature(m) -> dict:
    sig = {k: m[k] for k in SHAPE_KEYS}
    sig["layer_schedule"] = [tuple(vars(s).values()) for s in layer_schedule(m)]
    return sig


def _peft_signature(cfg) -> dict:
    """The settings that decide the shapes of a fine-tuning state's parameters."""
    p = cfg.get("peft") or {"method": "none"}
    if p.get("method", "none") == "none":
        return {"method": "none"}
    targets = ",".join(sorted(t.strip() for t in p["targets"].split(",") if t.strip()))
    return {"method": p["method"], "rank": p["rank"], "targets": targets,
            "base_dtype": p["base_dtype"],
            "adapters_only": bool(cfg.get("checkpoint", {}).get("adapters_only", False))}


def check_compatible(saved_cfg, cfg, saved_tok: str | None, tok: str | None, where: str) -> None:
    """Raises ``IncompatibleCheckpointError`` naming the first difference."""
    a, b = _model_signature(saved_cfg.model), _model_signature(cfg.model)
    for key in a:
        if a[key] != b[key]:
            raise IncompatibleCheckpointError(
                f"{where} was trained with model.{key}={a[key]} but the config has "
                f"model.{key}={b[key]}; use another --workdir or the matching config")
    a, b = _peft_signature(saved_cfg), _peft_signature(cfg)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            name = ("checkpoint." if key == "adapters_only" else "peft.") + key
            raise IncompatibleCheckpointError(
                f"{where} was trained with {name}={a.get(key)} but the config has "
                f"{name}={b.get(key)}; use another --workdir or the matching config")
    a, b = (c.get("prefs", {}).get("reference") for c in (saved_cfg, cfg))
    if a != b:  # preference training's reference decides the state's layout
        raise IncompatibleCheckpointError(
            f"{where} was trained with prefs.reference={a} but the config has prefs.reference={b}; "
            f"use another --workdir or the matching config")
    if saved_tok and tok and saved_tok != tok:
        raise IncompatibleCheckpointError(
            f"{where} was trained with another tokenizer (sha256 {saved_tok[:12]}…, the config's "
            f"data.tokenizer has {tok[:12]}…); use the tokenizer the run started with")


class Checkpointer:
    """Saves and restores one run's checkpoints in ``workdir/checkpoints``."""

    def __init__(self, workdir, cfg):
        self.cfg = cfg
        self.directory = checkpoint_dir(workdir)
        c = cfg.checkpoint
        options = ocp.CheckpointManagerOptions(
            max_to_keep=c.keep or None,
            keep_period=c.get("keep_every", 0) or None,
            create=True,
            enable_async_checkpointing=c.get("async_save", True),
            # S3 has no atomic rename: commit by a file written last (Orbax's way on GCS)
            **({"temporary_path_class": ocp.path.atomicity.CommitFileTemporaryPath}
               if storage.scheme(self.directory) == "s3" else {}),
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        tok = cfg.data.get("tokenizer") if "data" in cfg else None
        self.tokenizer_sha256 = file_sha256(tok) if tok else None

    # ------------------------------------------------------------------ save

    def save(self, step: int, state, data, force: bool = False) -> bool:
        """Starts an asynchronous save of ``state`` and ``data``'s position at ``step``."""
        meta = {"config": json.loads(self.cfg.to_json_best_effort()),
                "tokenizer_sha256": self.tokenizer_sha256,
                "phase": data.phase_name(max(step - 1, 0)) if data is not None else None,
                "time": time.time(), "step": int(step)}
        items = {"state": ocp.args.PyTreeSave(state), "meta": ocp.args.JsonSave(meta)}
        if data is not None:
            import grain

            items["data"] = grain.checkpoint.CheckpointSave(data)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def reached_preemption(self, step: int) -> bool:
        """True when JAX's multi-host preemption sync point says to save and stop now."""
        return bool(self.manager.reached_preemption(step))

    # ------------------------------------------------------------------ restore

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def check_latest_compatible(self) -> None:
        """Refuses (``IncompatibleCheckpointError``) a newest readable checkpoint that does not fit
        the config — called before the data pipeline and the model are built."""
        for step in reversed(self.steps()):
            try:
                meta = self.read_meta(step)
            except Exception:  # noqa: BLE001 - damaged: restore_latest reports and skips it
                continue
            check_compatible(config_from_json(meta["config"]), self.cfg,
                             meta.get("tokenizer_sha256"), self.tokenizer_sha256,
                             f"checkpoint {self.directory / str(step)}")
            return

    def restore_latest(self, abstract_state, shardings, data):
        """Restores the newest readable checkpoint onto ``shardings``; sets ``data``'s position.

        Returns ``(state, step)`` or None when there is no checkpoint. A damaged latest
        checkpoint is reported and the previous one used; an incompatible one is refused.
        """
        steps = self.steps()
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              abstract_state, shardings)
        for step in reversed(steps):
            where = f"checkpoint {self.directory / str(step)}"
            try:
                meta = self.read_meta(step)
            except Exception as e:  # noqa: BLE001 - any unreadable metadata means damage
                log.warning("%s is damaged (unreadable metadata: %s: %s); using the previous one",
                            where, type(e).__name__, str(e)[:200])
                continue
            check_compatible(config_from_json(meta["config"]), self.cfg,
                             meta.get("tokenizer_sha256"), self.tokenizer_sha256, where)
            items = {"state": ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target))}
            # A checkpoint made by ``elmjax import`` has no data position: start the data fresh.
            data_dir, resplit = self.directory / str(step) / "data", False
            if data is not None and data_dir.exists():
                import grain

                from elmjax.data import hosts

                # Another host count: refused (HostCountError, not damage) or re-split.
                resplit = hosts.check_host_count(data_dir, jax.process_count(),
                                                 bool(self.cfg.get("data", {}).get("allow_resplit", False)),
                                                 where)
                if resplit and not hasattr(data, "resplit"):
                    raise hosts.HostCountError(f"{where}: {type(data).__name__} data cannot be "
                                               f"re-split for another host count")
                if not resplit:
                    items["data"] = grain.checkpoint.CheckpointRestore(data)
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # noqa: BLE001 - truncated/missing files: fall back
                log.warning("%s is damaged (%s: %s); using the previous one",
                            where, type(e).__name__, str(e)[:200])
                continue
            if resplit:
                data.resplit(hosts.saved_positions(data_dir))
                log.warning("%s: data positions of %d host(s) re-split for %d (every source "
                            "starts a new epoch; data.allow_resplit)", where,
                            hosts.saved_host_count(data_dir), jax.process_count())
            return restored["state"], step
        if steps:  # never start afresh over checkpoints that exist: they would be overwritten
            raise DamagedCheckpointError(
                f"{self.directory}: no checkpoint of {steps} can be restored (see the warnings "
                f"above); move the directory away or use another --workdir to start afresh")
        return None

    def close(self) -> None:
        """Waits for in-flight asynchronous saves, then releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _reading(workdir, step: int | None = None):
    """Yields ``(manager, directory, step, meta)`` for a run's checkpoint (latest by default)."""
    directory = checkpoint_dir(workdir)
    if not directory.exists():
        raise FileNotFoundError(f"{workdir}: no checkpoints/ directory (is this an elmjax workdir?)")
    mgr = ocp.CheckpointManager(directory)
    try:
        steps = sorted(mgr.all_steps())
        if not steps:
            raise FileNotFoundError(f"{directory}: no checkpoints")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise FileNotFoundError(f"{directory}: no checkpoint at step {step} (have {steps})")
        try:
            meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - any unreadable file of the step
            raise _damaged(directory, step, steps, e) from None
        yield mgr, directory, step, meta
    finally:
        mgr.close()


def _damaged(directory, step: int, steps: list, e: Exception) -> DamagedCheckpointError:
    """The one-line error for a checkpoint step whose files cannot be read."""
    detail = " ".join(str(e).split())[:160]
    others = [s for s in steps if s != step]
    fix = (f"choose another with --step (this run also has {others})" if others
           else "it is the run's only checkpoint")
    return DamagedCheckpointError(f"checkpoint {directory / str(step)} is damaged "
                                  f"({type(e).__name__}: {detail}); {fix}")


def saved_config(workdir, step: int | None = None) -> ml_collections.ConfigDict:
    """The run config stored with a checkpoint (latest by default)."""
    with _reading(workdir, step) as (_, _, _, meta):
        return config_from_json(meta["config"])


def read_params(workdir, step, abstract_params, cfg=None):
    """``(config, params)``: the ``params`` subtree of a run's checkpoint (latest when ``step``
    is None) on the default device, without the optimizer state.

    ``abstract_params(saved_config)`` gives the stored tree's shapes (its owner is
    ``elmjax.train.state``); ``cfg``, when given, must fit the saved shapes and replaces the
    saved config (e.g. another ``model.dtype``).
    """
    with _reading(workdir, step) as (mgr, directory, step, meta):
        saved = config_from_json(meta["config"])
        if cfg is not None:
            check_compatible(saved, cfg, None, None, f"checkpoint {directory / str(step)}")
            saved = cfg
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                              abstract_params(saved))
        try:
            restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
                item={"params": target},
                restore_args={"params": ocp.checkpoint_utils.construct_restore_args(target)},
                partial_restore=True)))
        except Exception as e:  # noqa: BLE001 - truncated, missing or foreign files
            raise _damaged(directory, step, sorted(mgr.all_steps()), e) from None
    params = restored["state"]["params"]
    # A partial restore leaves what the checkpoint lacks as abstract placeholders.
    missing = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path(params)
               if isinstance(x, jax.ShapeDtypeStruct)]
    if missing:
        raise DamagedCheckpointError(
            f"checkpoint {directory / str(step)} has no parameter {missing[0]} ({len(missing)} "
            f"missing): it is not a checkpoint of this run's model")
    return saved, params


def list_checkpoints(workdir) -> list[dict]:
    """One dict per checkpoint: step, time, size in bytes, phase."""
    directory = checkpoint_dir(workdir)
    if not directory.exists():
        return []
    mgr = ocp.CheckpointManager(directory)
    rows = []
    try:
        for step in sorted(mgr.all_steps()):
            path = directory / str(step)
            size = storage.tree_size(path)
            try:
                meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception:  # noqa: BLE001 - list damaged checkpoints too
                meta = {}
            rows.append({"step": step, "time": meta.get("time"), "bytes": size,
                         "phase": meta.get("phase"), "damaged": not meta})
    finally:
        mgr.close()
    return rows
