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


# --------------------------------------------------------------------------- inference


def _inference_model(args, overrides):
    """``(config, params)`` from ``--hf``, ``--workdir`` or (random weights) ``--config``."""
    if getattr(args, "hf", None):
        from elmjax.interop.hf import load_hf

        cfg, params = load_hf(args.hf)
    elif getattr(args, "workdir", None):
        from elmjax.checkpoint import load_params

        cfg, params = load_params(args.workdir, args.step)
    else:
        import jax

        from elmjax.model.openelm import init_params

        cfg = _config_from(args, overrides)
        params = init_params(cfg, jax.random.key(args.seed))
    if args.dtype:
        cfg.model.dtype = args.dtype
    return cfg, params


def _open_tokenizer(path):
    """``(encode, decode, bos_id, eos_id)`` of a SentencePiece ``.model`` file.

    ``decode`` skips ids beyond the tokenizer's pieces (a model may have padded
    embedding rows, e.g. corenet's 32128 for 32000 pieces).
    """
    import os

    import sentencepiece as spm

    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"tokenizer {path!r} not found: pass --tokenizer PATH to a SentencePiece .model "
            "(Apple's OpenELM checkpoints use LLaMA's tokenizer, which they do not ship)")
    sp = spm.SentencePieceProcessor(model_file=path)
    size = sp.get_piece_size()
    return (sp.encode, lambda ids: sp.decode([i for i in ids if 0 <= i < size]),
            sp.bos_id(), sp.eos_id())


def cmd_generate(args, overrides):
    """Generates text from a prompt, printing it as it is produced."""
    import time

    import jax

    from elmjax.inference import generate

    cfg, params = _inference_model(args, overrides)
    tok_path = args.tokenizer or (cfg.data.tokenizer if "data" in cfg else None)
    encode, decode, bos, eos = _open_tokenizer(tok_path)
    prompt = ([bos] if bos >= 0 else []) + list(encode(args.prompt))
    produced = list(prompt)
    shown = decode(produced)  # decoding with the prompt keeps the first new word's space

    def stream(tokens, active):
        nonlocal shown
        if active[0] and int(tokens[0]) != eos:
            produced.append(int(tokens[0]))
            text = decode(produced)
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text

    sys.stdout.write(args.prompt)
    t0 = time.perf_counter()
    out = generate(cfg, params, [prompt], args.max_new_tokens, key=jax.random.key(args.seed),
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   stop_tokens=[eos] if eos >= 0 else [], callback=stream)
    dt = time.perf_counter() - t0
    sys.stdout.write("\n")
    n = int(out.lengths[0])
    print(f"[{len(prompt)} prompt tokens, {n} generated in {dt:.2f} s, compilation included]",
          file=sys.stderr)
    return 0


def cmd_bench_infer(args, overrides):
    """Prints prefill / generation tokens/s and, optionally, the decode-time breakdown."""
    import jax

    from elmjax import bench

    cfg, params = _inference_model(args, overrides)
    m = cfg.model
    print(f"{m.name}: {jax.devices()[0].device_kind}, dtype {m.dtype}, batch {args.batch}, "
          f"prompt {args.prompt_len}, generate {args.gen_len}, median of {args.reps}")
    r = bench.measure_inference(cfg, params, args.batch, args.prompt_len, args.gen_len,
                                reps=args.reps)
    print(f"prefill    {r.prefill_tok_s:10.1f} tok/s  ({1e3 * r.prefill_s:.1f} ms)")
    print(f"generation {r.gen_tok_s:10.1f} tok/s  ({r.step_ms:.2f} ms per step)")
    if args.breakdown:
        print(bench.format_breakdown(bench.decode_breakdown(
            cfg, params, args.batch, args.prompt_len, args.gen_len, reps=args.reps)))
    return 0


def _add_model_source_args(p, allow_config):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="directory in Apple's Hugging Face OpenELM layout")
    src.add_argument("--workdir", help="elmjax run directory (latest checkpoint, or --step)")
    if allow_config:
        src.add_argument("--config", help="experiments/NAME.py[:ARG] with random weights")
    p.add_argument("--step", type=int, default=None, help="checkpoint step for --workdir")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="compute dtype (default: the model's)")
    p.add_argument("--seed", type=int, default=0)


def _add_inference_parsers(sub):
    p = sub.add_parser("generate", help="generate text from a prompt (streams as it goes)")
    _add_model_source_args(p, allow_config=False)
    p.add_argument("--tokenizer", help="SentencePiece .model (default: the run's data.tokenizer)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=0, help="0: no limit")
    p.add_argument("--top-p", type=float, default=1.0)
    p.set_defaults(func=cmd_generate)

    bench_p = sub.add_parser("bench", help="throughput benchmarks")
    bench_sub = bench_p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    p = bench_sub.add_parser("infer", help="prefill / generation tokens/s and decode breakdown")
    _add_model_source_args(p, allow_config=True)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--breakdown", action="store_true", help="also time decode by component")
    p.set_defaults(func=cmd_bench_infer)


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

    _add_inference_parsers(sub)
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
    except (ConfigError, FileNotFoundError) as e:
        print(f"elmjax {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
