"""``elmjax generate`` (streamed KV-cache generation) and ``elmjax bench infer`` (throughput)."""

from __future__ import annotations

import sys

from elmjax.cli.common import add_model_source_args, inference_model


def open_tokenizer(path):
    """``(encode, decode, bos_id, eos_id)`` of a SentencePiece ``.model`` file.

    ``decode`` skips ids beyond the tokenizer's pieces (a model may have padded
    embedding rows, e.g. corenet's 32128 for 32000 pieces).
    """
    from elmjax import storage

    if not path or not storage.isfile(path):
        raise FileNotFoundError(
            f"tokenizer {path!r} not found: pass --tokenizer PATH to a SentencePiece .model "
            "(Apple's OpenELM checkpoints use LLaMA's tokenizer, which they do not ship)")
    from elmjax.data.tokenizer import Tokenizer

    tok = Tokenizer(path)
    size = tok.vocab_size
    return (lambda text: tok.encode_batch([text], add_bos=False, add_eos=False)[0],
            lambda ids: tok.decode([i for i in ids if 0 <= i < size]), tok.bos_id, tok.eos_id)


def cmd_generate(args, overrides):
    """Generates text from a prompt, printing it as it is produced."""
    import time

    import jax

    from elmjax.inference import generate

    cfg, params = inference_model(args, overrides)
    from elmjax import storage

    tok_path = (storage.resolve(args.tokenizer) if args.tokenizer
                else cfg.data.tokenizer if "data" in cfg else None)
    encode, decode, bos, eos = open_tokenizer(tok_path)
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

    from elmjax.inference.decode_profile import decode_profile
    from elmjax.inference.throughput import measure_inference

    cfg, params = inference_model(args, overrides)
    m = cfg.model
    print(f"{m.name}: {jax.devices()[0].device_kind}, dtype {m.dtype}, batch {args.batch}, "
          f"prompt {args.prompt_len}, generate {args.gen_len}, median of {args.reps}")
    r = measure_inference(cfg, params, args.batch, args.prompt_len, args.gen_len, reps=args.reps)
    print(f"prefill    {r.prefill_tok_s:10.1f} tok/s  ({1e3 * r.prefill_s:.1f} ms)")
    print(f"generation {r.gen_tok_s:10.1f} tok/s  ({r.step_ms:.2f} ms per step)")
    if args.breakdown:
        print("decode time by component (jax.profiler trace):")
        print(decode_profile(cfg, params, args.batch, args.prompt_len, args.gen_len,
                             reps=args.reps).format())
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt (streams as it goes)")
    add_model_source_args(p, allow_config=False)
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
    add_model_source_args(p, allow_config=True)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--breakdown", action="store_true", help="also break decode time down by component (profiler trace)")
    p.set_defaults(func=cmd_bench_infer)
