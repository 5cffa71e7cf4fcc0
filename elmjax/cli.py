"""``elmjax <command>``: thin wrappers over the library.

Every command that takes a run config accepts ``--config experiments/NAME.py[:ARG]``
followed by any number of ``--config.section.key=value`` overrides.
Imports are lazy so ``elmjax --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys


def _config_from(args, overrides):
    from elmjax import config as config_lib

    return config_lib.load(args.config, overrides)


def _split_overrides(argv):
    """Separates ``--config.x.y=v`` overrides (absl syntax) from argparse options."""
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    return rest, overrides


EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: saved on SIGTERM, rerun to resume

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


def cmd_train(args, overrides):
    """Pretrains (or resumes) a run in ``--workdir``."""
    from elmjax import parallel

    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = _config_from(args, overrides)
    from elmjax.eval.harness import training_evaluator
    from elmjax.train import trainer

    try:
        result = trainer.train(cfg, args.workdir, evaluator=training_evaluator(cfg))
    except trainer.TrainingError as e:
        print(f"elmjax train: {e}", file=sys.stderr)
        return 3
    # Preempted after a clean save: EX_TEMPFAIL tells a scheduler to requeue the same command.
    return 0 if result.status == "completed" else EXIT_PREEMPTED


def cmd_export(args, overrides):
    """Writes a run's checkpoint in Apple's Hugging Face layout."""
    import shutil

    from elmjax import checkpoint
    from elmjax.interop import hf
    from elmjax.model import peft

    if peft.enabled(checkpoint.saved_config(args.workdir, args.step)):
        if not args.merge_adapters:
            print(f"elmjax export: {args.workdir} holds LoRA/DoRA adapters, which the Hugging Face "
                  "layout has no place for: pass --merge-adapters to fold them into the weights",
                  file=sys.stderr)
            return 2
        from elmjax.train.finetune import load_merged

        cfg, params = load_merged(args.workdir, args.step, args.init)
    else:
        cfg, params = checkpoint.load_params(args.workdir, args.step)
    names = hf.save_hf(args.out, cfg, params, dtype=args.dtype,
                       max_shard_bytes=int(args.max_shard_gb * 2 ** 30))
    tok = cfg.get("data", {}).get("tokenizer") if "data" in cfg else None
    if tok and os.path.exists(tok):
        shutil.copyfile(tok, os.path.join(args.out, "tokenizer.model"))
        names.append("tokenizer.model")
    print(f"wrote {args.out}: {', '.join(names)}")
    return 0


def cmd_import(args, overrides):
    """Makes a step-0 checkpoint from Apple's HF layout or a corenet ``.pt`` file."""
    import jax

    from elmjax import checkpoint, parallel
    from elmjax.interop import hf
    from elmjax.train import optimizer, state

    if bool(args.hf) == bool(args.corenet):
        print("elmjax import: give exactly one of --hf DIR or --corenet FILE.pt", file=sys.stderr)
        return 2
    if args.hf:
        hf_cfg, params = hf.load_hf(args.hf)
        cfg = _config_from(args, overrides) if args.config else _default_run_config()
        cfg.model = hf_cfg.model
    else:
        if not args.config:
            print("elmjax import: --corenet needs --config (the preset the model was trained "
                  "with, e.g. experiments/openelm_270m.py --config.model.vocab_size=32128)",
                  file=sys.stderr)
            return 2
        from elmjax.interop.corenet import load_corenet

        cfg = _config_from(args, overrides)
        params = load_corenet(args.corenet, cfg.model)
    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    train_state, _ = state.init_state(cfg, mesh, tx, jax.random.key(0), params)
    saver = checkpoint.Checkpointer(args.workdir, cfg)
    if saver.steps():
        print(f"elmjax import: {args.workdir} already has checkpoints {saver.steps()}; "
              "use an empty --workdir", file=sys.stderr)
        saver.close()
        return 2
    saver.save(0, train_state, None, force=True)
    saver.close()
    print(f"imported {args.hf or args.corenet} as step 0 of {args.workdir} "
          f"({sum(x.size for x in jax.tree.leaves(params)):,} parameters)")
    return 0


def _default_run_config():
    from elmjax.presets import base_config

    return base_config()


def cmd_checkpoints(args, overrides):
    """Lists a run's checkpoints."""
    import datetime

    from elmjax import checkpoint

    rows = checkpoint.list_checkpoints(args.workdir)
    if not rows:
        print(f"no checkpoints in {args.workdir}")
        return 1
    print(f"{'step':>8}  {'written':19}  {'size':>10}  phase")
    for r in rows:
        when = (datetime.datetime.fromtimestamp(r["time"]).strftime("%Y-%m-%d %H:%M:%S")
                if r["time"] else "damaged")
        print(f"{r['step']:>8}  {when:19}  {r['bytes'] / 2 ** 20:>8.1f}MB  {r['phase'] or '-'}")
    return 0


def _data_config(args, overrides):
    """The run config for data commands: ``--config`` or the defaults, with the command's options."""
    from elmjax.presets import base_config

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


def cmd_sweep(args, overrides):
    """Lists a sweep's runs, or runs them one after another in ``--workdir/NAME``."""
    from elmjax.config import curriculum_phases
    from elmjax.train import sweep

    runs = sweep.resolve(args.sweep, overrides)
    if args.sweep_command == "list":
        for name, run_overrides, cfg in runs:
            phases = ", ".join(f"{p.name}[{p.start},{p.end})" for p in curriculum_phases(cfg))
            print(f"{name}: {' '.join(run_overrides)}\n    {cfg.train.steps} steps; phases "
                  f"{phases}; mixtures {', '.join(p.mixture for p in curriculum_phases(cfg))}")
        return 0
    from elmjax.eval.harness import training_evaluator
    from elmjax.train import trainer

    failed = []
    for i, (name, _, cfg) in enumerate(runs):
        workdir = os.path.join(args.workdir, name)
        print(f"== sweep run {i + 1}/{len(runs)}: {name} -> {workdir}", flush=True)
        try:
            trainer.train(cfg, workdir, evaluator=training_evaluator(cfg))
        except trainer.TrainingError as e:
            print(f"run {name} failed: {e}", file=sys.stderr)
            failed.append(name)
    print(f"sweep done: {len(runs) - len(failed)} completed, {len(failed)} failed {failed or ''}")
    return 3 if failed else 0


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
    p.add_argument("--data-dir", help="task files, then TFDS datasets (see elmjax.eval.tasks)")
    p.add_argument("--limit", type=int, default=None, help="first N documents of each task")
    p.add_argument("--perplexity", help="held-out perplexity on a mixture YAML or a "
                                        ".jsonl/.json/.parquet/.txt file")
    p.add_argument("--perplexity-docs", type=int, default=1000,
                   help="documents per perplexity source (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per scoring batch")
    p.add_argument("--no-bos", action="store_true", help="do not prepend BOS to contexts")
    p.add_argument("--out", help="write the results as JSON here")
    p.set_defaults(func=cmd_eval)


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
    else:
        import jax

        if jax.default_backend() == "cpu" and cfg.model.dtype != "float32":
            # XLA's CPU matmuls are no faster in 16 bits: measured, OpenELM-270M decodes
            # 1.3x faster in float32 (BENCHMARKS.md, Inference).
            print(f"note: computing in float32 on CPU (the model's dtype is {cfg.model.dtype}; "
                  f"pass --dtype to choose)", file=sys.stderr)
            cfg.model.dtype = "float32"
    return cfg, params


def _open_tokenizer(path):
    """``(encode, decode, bos_id, eos_id)`` of a SentencePiece ``.model`` file.

    ``decode`` skips ids beyond the tokenizer's pieces (a model may have padded
    embedding rows, e.g. corenet's 32128 for 32000 pieces).
    """
    if not path or not os.path.isfile(path):
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
        print("decode time by component (jax.profiler trace):")
        print(bench.decode_profile(cfg, params, args.batch, args.prompt_len, args.gen_len,
                                   reps=args.reps).format())
    return 0


def _add_model_source_args(p, allow_config):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="directory in Apple's Hugging Face OpenELM layout")
    src.add_argument("--workdir", help="elmjax run directory (latest checkpoint, or --step)")
    if allow_config:
        src.add_argument("--config", help="experiments/NAME.py[:ARG] with random weights")
    p.add_argument("--step", type=int, default=None, help="checkpoint step for --workdir")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="compute dtype (default: the model's; float32 on CPU)")
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
    p.add_argument("--breakdown", action="store_true", help="also break decode time down by component (profiler trace)")
    p.set_defaults(func=cmd_bench_infer)


# --------------------------------------------------------------------------- fine-tuning


def cmd_finetune(args, overrides):
    """Instruction-tunes (all weights, or LoRA/DoRA adapters) from ``--init`` in ``--workdir``."""
    from elmjax import parallel

    parallel.initialize_distributed()
    cfg = _config_from(args, overrides)
    from elmjax.config import ConfigError
    from elmjax.train import finetune, trainer

    try:
        result = finetune.finetune(cfg, args.workdir, args.init)
    except ConfigError:
        raise
    except (FileNotFoundError, ValueError) as e:  # missing --init / data, incompatible checkpoint
        print(f"elmjax finetune: {e}", file=sys.stderr)
        return 2
    except trainer.TrainingError as e:
        print(f"elmjax finetune: {e}", file=sys.stderr)
        return 3
    return 0 if result.status == "completed" else EXIT_PREEMPTED


def add_finetune_command(sub) -> None:
    """``elmjax finetune --config experiments/NAME.py --init HF_DIR|WORKDIR --workdir DIR``."""
    p = sub.add_parser("finetune", help="instruction-tune a model (all weights or LoRA/DoRA) "
                                        "from imported or pretrained weights")
    _add_config_arg(p)
    p.add_argument("--init", required=True,
                   help="starting weights: a Hugging Face OpenELM directory or an elmjax workdir")
    p.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")
    p.set_defaults(func=cmd_finetune)


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

    p = sub.add_parser("train", help="pretrain (or resume) a model in a workdir")
    _add_config_arg(p)
    p.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--coordinator", help="multi-host: coordinator host:port (auto-detected on "
                                         "TPU pods and SLURM)")
    p.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, help="multi-host: this process's index")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write a checkpoint in Apple's Hugging Face layout")
    p.add_argument("--workdir", required=True)
    p.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="shard size limit")
    p.add_argument("--merge-adapters", action="store_true",
                   help="LoRA/DoRA runs: fold the adapters into plain weights")
    p.add_argument("--init", help="base weights of an adapters-only run (default: the --init "
                                  "it was fine-tuned from)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="make a step-0 checkpoint from HF or corenet weights")
    p.add_argument("--hf", help="directory in Apple's Hugging Face layout")
    p.add_argument("--corenet", help="corenet PyTorch checkpoint (.pt)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", help="run config for training settings (and the model, for --corenet)")
    p.set_defaults(func=cmd_import)

    add_finetune_command(sub)

    p = sub.add_parser("checkpoints", help="list a run's checkpoints")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_checkpoints)

    p = sub.add_parser("sweep", help="list or run the runs of a sweep file")
    sweep_sub = p.add_subparsers(dest="sweep_command", metavar="SWEEP_COMMAND", required=True)
    p = sweep_sub.add_parser("list", help="print each run's overrides, phases and mixtures")
    p.add_argument("sweep", help="experiments/sweeps/NAME.py")
    p.set_defaults(func=cmd_sweep)
    p = sweep_sub.add_parser("run", help="run every run one after another on this host "
                             "(a finished run is skipped, an interrupted one resumes)")
    p.add_argument("sweep", help="experiments/sweeps/NAME.py")
    p.add_argument("--workdir", required=True, help="parent directory: one run directory per run")
    p.set_defaults(func=cmd_sweep)

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

    add_eval_parser(sub)
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
