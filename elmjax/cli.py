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


def _data_config(args, overrides):
    """The run config for data commands: ``--config`` or the defaults, with the command's options."""
    from experiments.common import base_config

    from elmjax import config as config_lib

    if args.config:
        cfg = _config_from(args, overrides)
    else:
        cfg = config_lib.validate(base_config())
    if args.mixture:
        cfg.data.mixture = args.mixture
    if args.tokenizer:
        cfg.data.tokenizer = args.tokenizer
    if not args.config:
        from elmjax.data.mixture import resolve
        from elmjax.data.tokenizer import Tokenizer

        cfg.model.vocab_size = Tokenizer(resolve(cfg.data.tokenizer)).vocab_size
    if getattr(args, "seq_len", None):
        cfg.data.seq_len = args.seq_len
    if getattr(args, "batch_size", None):
        cfg.train.global_batch_size = args.batch_size
    return cfg


def cmd_data_inspect(args, overrides):
    """Reads batches through the pipeline; prints per-source counts, proportions, speed, a sample."""
    import json

    from elmjax.data.inspect import format_report, inspect_mixture

    try:
        cfg = _data_config(args, overrides)
        report = inspect_mixture(cfg, batches=args.batches, one_pass=args.one_pass)
    except (FileNotFoundError, ValueError) as e:
        print(f"elmjax data inspect: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_tokenizer_train(args, overrides):
    """Trains a SentencePiece model on a sample of a mixture's documents."""
    from elmjax.data import mixture
    from elmjax.data.tokenizer import Tokenizer, train_tokenizer

    try:
        specs = mixture.load(args.mixture)
        texts = mixture.sample_documents(specs, args.max_documents, args.max_chars)
        path = train_tokenizer(texts, args.output, args.vocab_size, model_type=args.model_type,
                               num_threads=args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"elmjax tokenizer train: {e}", file=sys.stderr)
        return 2
    tok = Tokenizer(path)
    print(f"wrote {path}: {tok.vocab_size} pieces, bos={tok.bos_id} eos={tok.eos_id} "
          f"pad={tok.pad_id}")
    return 0


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

    p = sub.add_parser("data", help="inspect training data")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = data_sub.add_parser("inspect", help="read a mixture through the pipeline and report "
                            "per-source counts, proportions, throughput and a sample")
    p.add_argument("--config", help="experiments/NAME.py[:ARG] (default: the base config)")
    p.add_argument("--mixture", help="mixture YAML (default: the config's data.mixture)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the config's data.tokenizer)")
    p.add_argument("--batches", type=int, default=20, help="batches to read (default 20)")
    p.add_argument("--one-pass", action="store_true",
                   help="read every shard exactly once, unshuffled, and report exact totals")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--seq-len", type=int, help="override data.seq_len")
    p.add_argument("--batch-size", type=int, help="override train.global_batch_size")
    p.set_defaults(func=cmd_data_inspect)

    p = sub.add_parser("tokenizer", help="train tokenizers")
    tok_sub = p.add_subparsers(dest="tokenizer_command", metavar="TOKENIZER_COMMAND",
                               required=True)
    p = tok_sub.add_parser("train", help="train a SentencePiece model on a sample of a mixture")
    p.add_argument("--mixture", required=True, help="mixture YAML to sample documents from")
    p.add_argument("--output", required=True, help="path of the .model file to write")
    p.add_argument("--vocab-size", type=int, default=32000, help="pieces (default 32000)")
    p.add_argument("--max-documents", type=int, default=100_000,
                   help="documents to sample, shared among sources by weight (default 100000)")
    p.add_argument("--max-chars", type=int, default=500_000_000,
                   help="stop sampling after this many characters (default 5e8)")
    p.add_argument("--model-type", default="bpe", choices=("bpe", "unigram"))
    p.add_argument("--threads", type=int, default=1, help="trainer threads (default 1)")
    p.set_defaults(func=cmd_tokenizer_train)
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
