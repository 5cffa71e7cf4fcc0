"""``elmjax <command>``: thin wrappers over the library.

Every command that takes a run config accepts ``--config experiments/NAME.py[:ARG]``
followed by any number of ``--config.section.key=value`` overrides.
Imports are lazy so ``elmjax --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys


def _config_from(args, overrides):
    from elmjax import config as config_lib

    return config_lib.load(args.config, overrides)


def _split_overrides(argv):
    """Separates ``--config.x.y=v`` overrides (absl syntax) from argparse options."""
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    return rest, overrides


# --------------------------------------------------------------------------- commands


def cmd_model(args, overrides):
    """Prints the model's layer schedule, parameter count and FLOPs per token."""
    from elmjax import config as config_lib

    cfg = _config_from(args, overrides)
    print(config_lib.describe(cfg))
    seq = cfg.data.seq_len if "data" in cfg else cfg.model.max_context_length
    honest = config_lib.flops_per_token(cfg.model, seq, causal=True)
    common = config_lib.flops_per_token(cfg.model, seq, causal=False)
    print(f"training FLOPs/token at seq_len {seq}: {honest:.4g} (causal attention), "
          f"{common:.4g} (6N + 12LHQT)")
    if args.init:
        import jax

        from elmjax.model.openelm import init_params

        params = init_params(cfg, jax.random.key(0))
        n = sum(x.size for x in jax.tree.leaves(params))
        print(f"initialised {n:,} parameters on {jax.devices()[0].platform}")
    return 0


# --------------------------------------------------------------------------- eval


def cmd_eval(args, overrides):
    """Zero-shot tasks and held-out perplexity: prints a results table, writes JSON (``--out``)."""
    from elmjax.eval import harness

    try:
        return harness.run_cli(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"elmjax eval: {e}", file=sys.stderr)
        return 2


def add_eval_parser(sub):
    """The ``eval`` subcommand's options."""
    p = sub.add_parser("eval", help="zero-shot tasks (lm-evaluation-harness formats) and perplexity")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="a Hugging Face OpenELM directory (config.json + safetensors)")
    src.add_argument("--workdir", help="an elmjax run directory (its checkpoints)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    p.add_argument("--tasks", default="",
                   help="comma-separated: arc_easy,arc_challenge,boolq,hellaswag,piqa,sciq,"
                        "winogrande (or 'all')")
    p.add_argument("--data-dir", help="directory with the task files (see elmjax.eval.tasks)")
    p.add_argument("--limit", type=int, default=None, help="first N documents of each task")
    p.add_argument("--perplexity", help="held-out perplexity on a mixture YAML or a "
                                        ".jsonl/.json/.parquet/.txt file")
    p.add_argument("--perplexity-docs", type=int, default=1000,
                   help="documents per perplexity source (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per scoring batch")
    p.add_argument("--no-bos", action="store_true", help="do not prepend BOS to contexts")
    p.add_argument("--out", help="write the results as JSON here")
    p.set_defaults(func=cmd_eval)


def _add_config_arg(p):
    p.add_argument("--config", required=True,
                   help="experiments/NAME.py[:ARG]; override keys with --config.section.key=value")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elmjax",
        description="Pretrain, evaluate, fine-tune and export OpenELM-family models with JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("model", help="print a config's layer schedule and parameter count")
    _add_config_arg(p)
    p.add_argument("--init", action="store_true", help="also initialise the parameters")
    p.set_defaults(func=cmd_model)

    add_eval_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from elmjax.config import ConfigError

    try:
        return int(args.func(args, overrides) or 0)
    except ConfigError as e:
        print(f"elmjax {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
