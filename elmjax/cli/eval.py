"""``elmjax eval``: tasks, the suites (zero_shot, openllm, llm360) and held-out perplexity."""

from __future__ import annotations

from elmjax.cli.common import fail


def cmd_eval(args, overrides):
    """Tasks, suites and held-out perplexity: prints result tables, writes JSON (``--out``)."""
    from elmjax import storage
    from elmjax.eval import harness

    for name in ("hf", "workdir", "tokenizer", "data_dir", "perplexity"):
        if getattr(args, name, None):
            setattr(args, name, storage.resolve(getattr(args, name)))
    try:
        return harness.run_cli(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        return fail("eval", e)


def register(sub) -> None:
    p = sub.add_parser("eval", help="lm-evaluation-harness tasks and the paper's suites "
                                    "(zero_shot, openllm, llm360), and perplexity")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="a Hugging Face OpenELM directory (config.json + safetensors)")
    src.add_argument("--workdir", help="an elmjax run directory (its checkpoints)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    p.add_argument("--tasks", default="",
                   help="comma-separated suites (zero_shot, openllm, llm360: the paper's shot "
                        "counts), groups (mmlu) and tasks (arc_easy, arc_challenge, boolq, "
                        "hellaswag, piqa, sciq, winogrande, mmlu_<subject>, truthfulqa_mc1, "
                        "truthfulqa_mc2, crows_pairs_english, race; 0-shot alone); 'all' = "
                        "zero_shot")
    p.add_argument("--num-fewshot", type=int, default=None,
                   help="shots for every task, overriding the suites' counts (TruthfulQA "
                        "stays 0-shot, as in lm-evaluation-harness)")
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
