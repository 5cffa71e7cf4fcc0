"""What the command modules share: run configs from ``--config`` with overrides, exit codes,
and where a command's model comes from (``--hf``, ``--workdir`` or ``--config``)."""

from __future__ import annotations

import sys

EXIT_USAGE = 2  # a user error: bad config, missing file, incompatible checkpoint
EXIT_FAILED = 3  # the run itself failed (e.g. non-finite losses)
EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: saved on SIGTERM, rerun to resume


def config_from(args, overrides):
    """The validated run config of ``--config`` with ``--config.a.b=v`` overrides, paths resolved."""
    from elmjax import config as config_lib

    return config_lib.load(args.config, overrides)


def split_overrides(argv):
    """Separates ``--config.x.y=v`` overrides (absl syntax) from argparse options."""
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    return rest, overrides


def add_config_arg(p, required: bool = True, help: str | None = None):
    p.add_argument("--config", required=required, help=help or
                   "experiments/NAME.py[:ARG]; override keys with --config.section.key=value")


def fail(command: str, error, code: int = EXIT_USAGE) -> int:
    """Prints ``elmjax COMMAND: error`` on stderr; returns ``code``."""
    print(f"elmjax {command}: {error}", file=sys.stderr)
    return code


def add_model_source_args(p, allow_config):
    """``--hf`` | ``--workdir`` (``--step``) | (``--config``, random weights), ``--dtype``, ``--seed``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="directory in Apple's Hugging Face OpenELM layout")
    src.add_argument("--workdir", help="elmjax run directory (latest checkpoint, or --step)")
    if allow_config:
        src.add_argument("--config", help="experiments/NAME.py[:ARG] with random weights")
    p.add_argument("--step", type=int, default=None, help="checkpoint step for --workdir")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="compute dtype (default: the model's; float32 on CPU)")
    p.add_argument("--seed", type=int, default=0)


def inference_model(args, overrides):
    """``(config, params)`` from ``--hf``, ``--workdir`` or (random weights) ``--config``."""
    from elmjax import storage

    if getattr(args, "hf", None):
        from elmjax.interop.hf import load_hf

        cfg, params = load_hf(storage.resolve(args.hf))
    elif getattr(args, "workdir", None):
        from elmjax.train.state import load_params

        cfg, params = load_params(storage.resolve(args.workdir), args.step)
    else:
        import jax

        from elmjax.model.openelm import init_params

        cfg = config_from(args, overrides)
        params = init_params(cfg, jax.random.key(args.seed))
    if args.dtype:
        cfg.model.dtype = args.dtype
    else:
        import jax

        if jax.default_backend() == "cpu" and cfg.model.dtype != "float32":
            # XLA's CPU matmuls are no faster in 16 bits: measured, OpenELM-270M decodes
            # 1.3x faster in float32 (BENCHMARKS.md, Inference).
            print(f"note: computing in float32 on CPU (the model's dtype is {cfg.model.dtype}; "
                  f"pass --dtype to choose)", file=sys.stderr)
            cfg.model.dtype = "float32"
    return cfg, params
