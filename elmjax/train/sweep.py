"""Sweeps: a config file whose ``get_sweep()`` lists runs as (name, overrides).

Each run is the sweep file's ``get_config()`` with its overrides applied through the same
type-checked ``--config.key=value`` path as the command line, so a sweep is nothing more
than a list of command lines one could type.
"""

from __future__ import annotations

import os

from elmjax import config as config_lib
from elmjax import presets


def _module(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"sweep file not found: {path}")
    module = presets.config_module(path)
    if not hasattr(module, "get_sweep") or not hasattr(module, "get_config"):
        raise config_lib.ConfigError(f"{path}: a sweep file defines get_config() and get_sweep()")
    return module


def sweep_runs(path: str) -> list[tuple[str, list[str]]]:
    """``[(run name, ["--config.key=value", ...]), ...]`` of a sweep file."""
    runs = []
    for name, overrides in _module(path).get_sweep():
        runs.append((name, [f"--config.{k}={v}" for k, v in overrides.items()]))
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise config_lib.ConfigError(f"{path}: run names must be unique, got {names}")
    return runs


def resolve(path: str, extra_overrides=()) -> list[tuple[str, list[str], object]]:
    """``[(name, overrides, validated config), ...]`` — every run checked before any starts."""
    return [(name, overrides, config_lib.load(path, [*overrides, *extra_overrides]))
            for name, overrides in sweep_runs(path)]
