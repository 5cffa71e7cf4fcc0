"""Data positions across a change in the number of hosts.

Every host saves its own data-iterator position in a checkpoint's ``data/`` item, as
``process_I-of-N.json`` (grain's Orbax handler). A position only means something for the
split of the shards it was made with (host ``I`` of ``N``), so a run restarted on a
different number of hosts cannot continue from it:

- by default the restart is refused with :class:`HostCountError`, which says how many
  hosts wrote the checkpoint and what to do;
- with ``data.allow_resplit: true`` the data are re-split for the new host count and every
  source starts a new epoch, numbered one past the furthest epoch any old host reached.
  The rest of the interrupted epoch is not read; the new position depends only on the
  checkpoint, the config and the new host count, so every restart of that kind reads the
  same batches.
"""

from __future__ import annotations

import json
import re

from etils import epath

_NAME = re.compile(r"^process_(\d+)-of-(\d+)\.json$")


class HostCountError(ValueError):
    """A checkpoint's data positions were written by another number of hosts."""


def saved_positions(data_dir) -> dict[int, str]:
    """``{process index: JSON text}`` of the positions in a checkpoint's ``data`` directory.

    Raises :class:`HostCountError` when the files name more than one host count (a
    directory mixed from two runs cannot be trusted)."""
    files = {}
    counts = set()
    for p in epath.Path(data_dir).iterdir():
        m = _NAME.match(p.name)
        if m:
            files[int(m.group(1))] = p
            counts.add(int(m.group(2)))
    if len(counts) > 1:
        raise HostCountError(f"{data_dir}: data positions from runs of {sorted(counts)} hosts "
                             f"side by side; this checkpoint's data item is not usable")
    return {i: files[i].read_text() for i in sorted(files)}


def saved_host_count(data_dir) -> int | None:
    """The host count that wrote a checkpoint's ``data`` directory (None: no positions)."""
    for p in epath.Path(data_dir).iterdir():
        m = _NAME.match(p.name)
        if m:
            return int(m.group(2))
    return None


def check_host_count(data_dir, process_count: int, allow_resplit: bool, where: str) -> bool:
    """Decides how to restore a checkpoint's data positions on ``process_count`` hosts.

    Returns False when the positions can be restored as they are (same host count, or
    none saved) and True when they must be re-split (another count, ``allow_resplit``).
    Raises :class:`HostCountError` naming ``where`` and the fix otherwise.
    """
    saved = saved_host_count(data_dir)
    if saved is None or saved == process_count:
        return False
    if not allow_resplit:
        raise HostCountError(
            f"{where} was written by {saved} host(s) but this run has {process_count}: each "
            f"host's data position belongs to its share of the shards. Restart on {saved} "
            f"host(s), or set data.allow_resplit=true to re-split the data for {process_count} "
            f"(every source then starts a new epoch)")
    return True


def resplit_start(positions: dict[int, str]) -> tuple[str | None, int]:
    """``(phase name, first epoch)`` for a re-split restart from the old hosts' positions.

    Takes :func:`saved_positions`. The phase is the one the old hosts were in (they save at
    the same step, so they agree; ``HostCountError`` otherwise); the first epoch is one past
    the largest epoch any source reached on any old host.
    """
    phases, epochs = set(), [-1]
    for text in positions.values():
        saved = json.loads(text)
        phases.add(saved.get("phase"))
        _collect_epochs(saved.get("iterator"), epochs)
    if len(phases) > 1:
        raise HostCountError(f"the saved data positions are in different phases {sorted(map(str, phases))}")
    return (phases.pop() if phases else None), max(epochs) + 1


def _collect_epochs(node, out: list) -> None:
    """Appends the ``epoch`` of every source-reader state found in a nested iterator state."""
    if isinstance(node, dict):
        if {"epoch", "shard", "record"} <= set(node):
            out.append(int(node["epoch"]))
        for v in node.values():
            _collect_epochs(v, out)
    elif isinstance(node, list):
        for v in node:
            _collect_epochs(v, out)
    elif isinstance(node, str) and node.startswith("{"):  # grain nests some states as JSON text
        try:
            _collect_epochs(json.loads(node), out)
        except ValueError:
            pass
