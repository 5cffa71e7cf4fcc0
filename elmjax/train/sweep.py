"""Sweeps: a config file whose ``get_sweep()`` lists runs as (name, overrides).

Each run is the sweep file's ``get_config()`` with its overrides applied through the same
type-checked ``--config.key=value`` path as the command line, so a sweep is nothing more
than a list of command lines one could type. A sweep spec may carry an argument like a
config (``experiments/sweeps/scaling_ladder.py:sizes=4``); it is passed to both
``get_config(arg)`` and, when it takes one, ``get_sweep(arg)``.

This module reads sweep files and writes what a cluster needs (one command per run, a
SLURM job-array script); ``sweep_runner`` runs them on this host, ``sweep_report``
gathers their results.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex

from elmjax import config as config_lib
from elmjax import presets

STATUS_FILE = "sweep_status.json"  # in each run directory, written by the sweep runner
SWEEP_FILE = "sweep.json"  # in the sweep directory: the spec and extra overrides it ran with


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"path.py:arg"`` -> ``("path.py", "arg")``; ``"path.py"`` -> ``("path.py", None)``."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def _module(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"sweep file not found: {path}")
    module = presets.config_module(path)
    if not hasattr(module, "get_sweep") or not hasattr(module, "get_config"):
        raise config_lib.ConfigError(f"{path}: a sweep file defines get_config() and get_sweep()")
    return module


def sweep_runs(spec: str) -> list[tuple[str, list[str]]]:
    """``[(run name, ["--config.key=value", ...]), ...]`` of a sweep spec (``path[:arg]``)."""
    path, arg = split_spec(spec)
    get_sweep = _module(path).get_sweep
    takes_arg = bool(inspect.signature(get_sweep).parameters)
    if arg is not None and not takes_arg:
        raise config_lib.ConfigError(f"{path}: get_sweep() takes no argument, got {arg!r}")
    entries = get_sweep(arg) if takes_arg else get_sweep()
    runs = []
    for name, overrides in entries:
        runs.append((name, [f"--config.{k}={_value(v)}" for k, v in overrides.items()]))
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise config_lib.ConfigError(f"{path}: run names must be unique, got {names}")
    bad = [n for n in names if not n or "/" in n or n.startswith(".")]
    if bad:
        raise config_lib.ConfigError(f"{path}: run names become directory names, got {bad}")
    return runs


def _value(v) -> str:
    """A value as absl's config flags parse it (tuples as ``(a, b)``)."""
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(repr(x) if isinstance(x, str) else str(x) for x in v) + \
            ("," if len(v) == 1 else "") + ")"
    return str(v)


def resolve(spec: str, extra_overrides=()) -> list[tuple[str, list[str], object]]:
    """``[(name, overrides, validated config), ...]`` — every run checked before any starts."""
    return [(name, overrides, config_lib.load(spec, [*overrides, *extra_overrides]))
            for name, overrides in sweep_runs(spec)]


def run_dir(workdir: str, name: str) -> str:
    """The directory of run ``name`` in sweep directory ``workdir``."""
    return os.path.join(workdir, name)


def read_status(workdir: str, name: str) -> dict | None:
    """The runner's status record of a run (``None`` if the runner never started it)."""
    path = os.path.join(run_dir(workdir, name), STATUS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_status(workdir: str, name: str, record: dict) -> None:
    """Atomically replaces a run's status record."""
    d = run_dir(workdir, name)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, STATUS_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(d, STATUS_FILE))


def record_sweep(workdir: str, spec: str, extra_overrides) -> None:
    """Notes the spec and extra overrides a sweep directory was run with (for the report)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, SWEEP_FILE), "w") as f:
        json.dump({"sweep": spec, "extra_overrides": list(extra_overrides)}, f, indent=1)


def recorded_overrides(workdir: str) -> list[str]:
    """The extra overrides ``record_sweep`` noted (empty if none)."""
    path = os.path.join(workdir, SWEEP_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(json.load(f).get("extra_overrides", []))


def train_argv(spec: str, workdir: str, name: str, overrides, extra_overrides=(),
               program=("elmjax",)) -> list[str]:
    """The ``elmjax train`` command line of one run (``program`` is how to call elmjax)."""
    return [*program, "train", "--config", spec, "--workdir", run_dir(workdir, name),
            *overrides, *extra_overrides]


def launch_commands(spec: str, workdir: str, extra_overrides=()) -> list[str]:
    """One shell command per run (``elmjax train ...``), quoted for a POSIX shell."""
    return [shlex.join(train_argv(spec, workdir, name, overrides, extra_overrides))
            for name, overrides in sweep_runs(spec)]


EXIT_PREEMPTED = 75  # `elmjax train` saved on SIGTERM: rerun the same command to resume


def slurm_array_script(commands: list[str], *, job_name: str = "elmjax-sweep",
                       log_dir: str = "slurm_logs", sbatch_options=()) -> str:
    """A SLURM job-array script running ``commands[SLURM_ARRAY_TASK_ID]``.

    Each task runs one command; a run preempted with a clean save (exit 75) is requeued
    and resumes from its checkpoint, a finished run's rerun does nothing new.
    ``sbatch_options``: extra ``#SBATCH`` lines' contents (``--gres=gpu:1``, ``--time=...``).
    """
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}",
             f"#SBATCH --array=0-{len(commands) - 1}",
             f"#SBATCH --output={log_dir}/%x_%A_%a.out", "#SBATCH --requeue",
             *(f"#SBATCH {o}" for o in sbatch_options), "",
             "# One elmjax run per array task; submit with: sbatch THIS_FILE", "COMMANDS=("]
    lines += [f"  {shlex.quote(c)}" for c in commands]
    lines += [")", 'eval "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"', "rc=$?",
              f"if [ $rc -eq {EXIT_PREEMPTED} ]; then",
              '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"', "fi",
              "exit $rc", ""]
    return "\n".join(lines)
