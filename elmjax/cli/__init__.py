"""``elmjax <command>``: thin wrappers over the library, one module per command group.

Every command that takes a run config accepts ``--config experiments/NAME.py[:ARG]``
followed by any number of ``--config.section.key=value`` overrides. Each module in
:data:`GROUPS` adds its commands with ``register(subparsers)``; a new command group is a new
module listed there. Imports inside commands are lazy so ``elmjax --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from elmjax.cli.common import EXIT_USAGE, fail, split_overrides

# Command-group modules of this package, in the order ``elmjax --help`` lists them.
GROUPS = ("model", "train", "checkpoints", "sweep", "data", "eval", "infer")


def build_parser() -> argparse.ArgumentParser:
    """The ``elmjax`` argument parser with every group's commands."""
    parser = argparse.ArgumentParser(
        prog="elmjax",
        description="Pretrain, evaluate, fine-tune and export OpenELM-family models with JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"elmjax.cli.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    """Runs one command; returns its exit status (0 ok, 2 a user error, 3 a failed run,
    75 preempted after saving)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from elmjax.config import ConfigError

    try:
        return int(args.func(args, overrides) or 0)
    except (ConfigError, FileNotFoundError) as e:
        return fail(args.command, e, EXIT_USAGE)
