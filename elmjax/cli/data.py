"""``elmjax data inspect`` and ``elmjax tokenizer train``."""

from __future__ import annotations

from elmjax.cli.common import add_config_arg, config_from, fail


def data_config(args, overrides):
    """The run config for data commands: ``--config`` or the defaults, with the command's options."""
    from elmjax import config as config_lib
    from elmjax import storage

    if args.config:
        cfg = config_from(args, overrides)
    else:
        cfg = config_lib.resolve_paths(config_lib.validate(config_lib.default_config()))
    if args.mixture:
        cfg.data.mixture = storage.resolve(args.mixture)
    if args.tokenizer:
        cfg.data.tokenizer = storage.resolve(args.tokenizer)
    if not args.config:
        from elmjax.data.tokenizer import Tokenizer

        cfg.model.vocab_size = Tokenizer(cfg.data.tokenizer).vocab_size
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
        cfg = data_config(args, overrides)
        report = inspect_mixture(cfg, batches=args.batches, one_pass=args.one_pass)
    except (FileNotFoundError, ValueError) as e:
        return fail("data inspect", e)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_tokenizer_train(args, overrides):
    """Trains a SentencePiece model on a sample of a mixture's documents."""
    from elmjax import storage
    from elmjax.data import mixture
    from elmjax.data.tokenizer import Tokenizer, train_tokenizer

    try:
        specs = mixture.load(storage.resolve(args.mixture))
        texts = mixture.sample_documents(specs, args.max_documents, args.max_chars)
        path = train_tokenizer(texts, storage.output_path(args.output), args.vocab_size,
                               model_type=args.model_type, num_threads=args.threads)
    except (FileNotFoundError, ValueError) as e:
        return fail("tokenizer train", e)
    tok = Tokenizer(path)
    print(f"wrote {path}: {tok.vocab_size} pieces, bos={tok.bos_id} eos={tok.eos_id} "
          f"pad={tok.pad_id}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="inspect training data")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = data_sub.add_parser("inspect", help="read a mixture through the pipeline and report "
                            "per-source counts, proportions, throughput and a sample")
    add_config_arg(p, required=False, help="experiments/NAME.py[:ARG] (default: the base config)")
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
