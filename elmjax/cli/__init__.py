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

from elmjax.cli.common import EXIT_FAILED, EXIT_USAGE, fail, split_overrides

# Command-group modules of this package, in the order ``elmjax --help`` lists them.
GROUPS = ("model", "train", "plan", "checkpoints", "sweep", "data", "eval", "infer")


def build_parser() -> argparse.ArgumentParser:
    """The ``elmjax`` argument parser with every group's commands."""
    parser = argparse.ArgumentParser(
        prog="elmjax",
        description="Pretrain, evaluate, fine-tune and export OpenELM-family models with JAX.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"elmjax.cli.{name}").register(sub)
    return parser


def _command_name(args) -> str:
    """``data inspect`` for ``elmjax data inspect``: the words that name the command."""
    words = [args.command]
    for key in ("data_command", "tokenizer_command", "sweep_command", "bench_command"):
        if getattr(args, key, None):
            words.append(getattr(args, key))
    return " ".join(words)


def main(argv=None) -> int:
    """Runs one command; returns its exit status (0 ok, 2 a user error, 3 a failed run,
    75 preempted after saving).

    An error is reported as one line ``elmjax COMMAND: what and the fix`` on stderr: user
    errors (bad config, missing or unreadable file, damaged input) exit 2, anything else 3
    with a pointer to ``--debug``, which shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.debug:
        return int(args.func(args, overrides) or 0)
    name = _command_name(args)
    from elmjax.storage import StorageError

    try:
        return int(args.func(args, overrides) or 0)
    except KeyboardInterrupt:
        return fail(name, "interrupted", 130)
    except (ValueError, OSError, StorageError) as e:  # user input: config, files, buckets
        return fail(name, _one_line(e), EXIT_USAGE)
    except Exception as e:  # noqa: BLE001 - one line; --debug shows the traceback
        return fail(name, f"{type(e).__name__}: {_one_line(e)} (an internal error: rerun with "
                          f"--debug for the traceback and report it)", EXIT_FAILED)


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (the first line of a multi-line message, which is
    the one that names the problem), with the file name of an OS error."""
    msg = str(e).strip()
    if isinstance(e, OSError) and e.filename and e.strerror:  # "[Errno 21] ..." -> "path: ..."
        msg = f"{e.filename}: {e.strerror}"
    if isinstance(e, KeyError):
        msg = f"missing key {msg}"
    lines = [x for x in msg.splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)
