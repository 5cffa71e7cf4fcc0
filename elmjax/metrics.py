"""Run metrics: JSONL and TensorBoard writers and the loss-curve plot.

The workdir may be local or on an object store (``gs://``, ``s3://``, through
``elmjax.storage``): there ``metrics.jsonl`` and the event file, which a bucket cannot append
to, are rewritten whole at most every ``REMOTE_SYNC_S`` seconds, when a checkpoint is saved
(:meth:`MetricsWriter.sync`) and on close.
"""

from __future__ import annotations

import json
import math
import os

from elmjax import storage

REMOTE_SYNC_S = 30.0


class _RemoteEventFiles:
    """tensorboardX writer factory for ``gs://`` and ``s3://`` event files, through
    ``elmjax.storage`` (tensorboardX's own uses other clients and endpoint variables)."""

    def open(self, path):
        return storage.RewrittenFile(path, REMOTE_SYNC_S)  # records append

    def directory_check(self, path):
        storage.filesystem(path)  # a missing extra is reported before training starts


def _register_event_writers():
    from tensorboardX import record_writer

    for s in storage.CLIENTS:
        record_writer.register_writer_factory(s, _RemoteEventFiles())


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard event files in the same directory. Only process 0 writes."""

    def __init__(self, workdir, enabled: bool = True):
        self.dir = os.fspath(workdir)
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            path = storage.join(self.dir, "metrics.jsonl")
            if storage.is_remote(self.dir):  # rewritten whole: never torn
                _register_event_writers()
                self._jsonl = storage.RewrittenFile(path, REMOTE_SYNC_S)
            else:
                storage.makedirs(self.dir)
                # A run killed while writing a row leaves it torn: end it, so new rows stay whole.
                old = storage.read_bytes(path) if os.path.exists(path) else b""
                torn = bool(old) and not old.endswith(b"\n")
                self._jsonl = open(path, "a", encoding="utf-8")
                if torn:
                    self._jsonl.write("\n")
            self._tb = SummaryWriter(self.dir)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for k, v in row.items():
            tag = f"eval/{k}" if k.startswith("eval") or "/" in k else f"train/{k}"
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self._tb.add_scalar(tag, v, step)
            elif isinstance(v, str):
                self._tb.add_text(tag, v, step)

    def sync(self) -> None:
        """Makes every row written so far durable (a remote file is rewritten now)."""
        if self.enabled and isinstance(self._jsonl, storage.RewrittenFile):
            self._jsonl.sync()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    return v


def read_metrics(workdir) -> list[dict]:
    """The rows of ``workdir/metrics.jsonl`` (empty list if there is none); a row torn by a
    run killed while writing it is left out."""
    path = storage.join(os.fspath(workdir), "metrics.jsonl")
    if not storage.isfile(path):
        return []
    rows = []
    for line in storage.read_bytes(path).decode("utf-8", "replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # blank, or torn by a kill mid-write
    return rows


def plot_loss(workdir, out_name: str = "loss.png") -> str | None:
    """Writes a loss-curve PNG from ``metrics.jsonl``; returns its path (None if no rows).

    Draws on its own ``Figure`` with an Agg canvas: the process's matplotlib backend and
    pyplot's figure list are left as they are.
    """
    rows = [r for r in read_metrics(workdir) if "loss" in r]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.4, label="train loss")
    evals = [r for r in rows if "eval_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss")
    phases = {}
    for r in rows:
        if "phase" in r:
            phases.setdefault(r["phase"], r["step"])
    for name, step in list(phases.items())[1:]:
        ax.axvline(step, color="gray", ls="--", lw=0.8)
        ax.text(step, ax.get_ylim()[1], f" {name}", va="top", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = storage.join(os.fspath(workdir), out_name)
    with storage.open_file(out, "wb") as f:
        fig.savefig(f, format="png")
    return out
