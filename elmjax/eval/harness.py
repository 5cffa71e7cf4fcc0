"""The evaluation loop: tasks and held-out perplexity for one model, plus the ``elmjax eval`` glue.

For the trainer (every N steps)::

    metrics = evaluate(config, params, tokenizer, ["arc_easy", "piqa"], data_dir, limit=500)
    # {"arc_easy/acc": 0.41, "arc_easy/acc_stderr": 0.02, "arc_easy/acc_norm": ..., ...}
    ppl = elmjax.eval.perplexity(config, params, token_docs)

For people: ``elmjax eval --hf DIR --tokenizer tok.model --tasks arc_easy,piqa --data-dir D``.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Sequence

from elmjax.eval import encoding, scoring
from elmjax.eval import tasks as tasks_lib

DEFAULT_TASKS = ("arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "sciq", "winogrande")


# --------------------------------------------------------------------------- tasks


def run_tasks(scorer: scoring.Scorer, tokenizer, task_names: Sequence[str], data_dir: str,
              limit: int | None = None, add_bos: bool = True) -> dict[str, dict]:
    """Scores each task's split; returns ``{task: {metric: value, metric_stderr: value, "samples": n}}``.

    scorer: a ``scoring.Scorer`` for the model; tokenizer: from ``encoding.open_tokenizer``;
    limit: the first N documents of each task (all when None); add_bos: prepend BOS
    to every context, as OpenELM's evaluation did.
    """
    selected = [tasks_lib.get_task(n) for n in task_names]
    results = {}
    for task in selected:
        examples = task.examples(data_dir, limit)
        pairs = [r for ex in examples for r in ex.requests]
        scores = scorer.loglikelihood(encoding.encode_pairs(tokenizer, pairs, add_bos=add_bos))
        per_metric = {m: [] for m in task.metrics}
        k = 0
        for ex in examples:
            lls = [ll for ll, _ in scores[k:k + len(ex.requests)]]
            k += len(ex.requests)
            for name, value in tasks_lib.example_metrics(task, ex, lls).items():
                per_metric[name].append(value)
        row = {}
        for name, values in per_metric.items():
            row[name], row[f"{name}_stderr"] = tasks_lib.mean_and_stderr(values)
        row["samples"] = len(examples)
        results[task.name] = row
    return results


def evaluate(config, params, tokenizer, tasks: Sequence[str], data_dir: str,
             limit: int | None = None, batch_size: int = 8, add_bos: bool = True) -> dict[str, float]:
    """Zero-shot accuracies for the training loop: a flat ``{"task/metric": value}`` dict.

    config: a run config or its model section; params: the parameter tree (any
    sharding); tokenizer: a tokenizer object or a SentencePiece ``.model`` path;
    tasks: names from ``elmjax.eval.tasks.TASKS``; data_dir: their files or TFDS datasets;
    limit: documents per task (all when None). Keys are ``task/acc``,
    ``task/acc_stderr`` and, where reported, ``task/acc_norm`` and its stderr.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = encoding.open_tokenizer(str(tokenizer))
    scorer = scoring.Scorer(config, params, batch_size)
    results = run_tasks(scorer, tokenizer, tasks, data_dir, limit, add_bos)
    return {f"{t}/{k}": float(v) for t, row in results.items() for k, v in row.items()
            if k != "samples"}


# --------------------------------------------------------------------------- perplexity


def _texts_of_file(path: str, limit: int | None) -> list[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        field = "text" if "text" in table.column_names else "content"
        texts = table.column(field).to_pylist()
    elif path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                records = [json.loads(line) for line in f if line.strip()]
            else:
                records = json.load(f)
        texts = [r if isinstance(r, str) else r.get("text", r.get("content")) for r in records]
    else:  # plain text: one document per file
        with open(path, encoding="utf-8") as f:
            texts = [f.read()]
    texts = [t for t in texts if isinstance(t, str) and t]
    return texts[:limit] if limit is not None else texts


def _texts_of_mixture(path: str, limit: int) -> dict[str, list[str]]:
    from elmjax.data import mixture, sources

    out = {}
    for spec in mixture.load(path):
        if spec.format == "tfds":
            data = sources.open_tfds(spec.tfds_name, spec.split, spec.data_dir)
            field = spec.text_field or "text"
            texts = []
            for i in range(min(limit, len(data))):
                t = data[i][field]
                texts.append(t.decode("utf-8") if isinstance(t, bytes) else t)
        else:
            stats = sources.SourceStats()
            texts = []
            for shard in sources.expand_paths(spec.paths, spec.base_dir):
                for _, text in sources.read_shard(shard, spec.read_options, stats):
                    texts.append(text)
                    if len(texts) >= limit:
                        break
                if len(texts) >= limit:
                    break
        out[spec.name] = texts
    return out


def read_perplexity_texts(path: str, limit: int | None = 1000) -> dict[str, list[str]]:
    """``{name: documents}`` for held-out perplexity.

    path: a mixture YAML file (the first ``limit`` documents of each source) or one
    ``.jsonl``/``.json`` (records with ``text``), ``.parquet`` (``text`` or
    ``content`` column) or plain-text file (one document).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"perplexity data not found: {path}")
    if path.endswith((".yaml", ".yml")):
        return _texts_of_mixture(path, limit if limit is not None else 1000)
    return {os.path.basename(path): _texts_of_file(path, limit)}


def text_perplexity(scorer: scoring.Scorer, tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Perplexities of documents, lm-evaluation-harness style.

    Returns ``token_perplexity`` (exp of the mean loss per token), ``word_perplexity``
    (per whitespace-separated word), ``byte_perplexity`` (per UTF-8 byte),
    ``bits_per_byte`` and ``documents``; every token of a document is predicted,
    the first from BOS.
    """
    docs = encoding.encode(tokenizer, texts)
    lls = scorer.loglikelihood_rolling(docs, tokenizer.bos_id)
    total = sum(lls)
    tokens = sum(len(d) for d in docs)
    words = sum(len(re.split(r"\s+", t)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    if tokens == 0:
        raise ValueError("perplexity: the documents have no tokens")
    return {"token_perplexity": math.exp(-total / tokens),
            "word_perplexity": math.exp(-total / words),
            "byte_perplexity": math.exp(-total / n_bytes),
            "bits_per_byte": -total / n_bytes / math.log(2),
            "documents": len(texts)}


def training_evaluator(cfg):
    """The periodic evaluation ``elmjax train`` runs every ``eval.every`` steps, or None.

    Returns ``evaluate(step, params) -> {name: value}`` with ``eval_loss`` (log of the
    held-out token perplexity, averaged over the sources of ``eval.perplexity``), each
    source's ``eval_ppl/NAME``, and ``TASK/METRIC`` accuracies for ``eval.tasks``.
    The held-out documents are read once, here.
    """
    e = cfg.get("eval")
    if e is None or not e.every:
        return None
    tasks = [t.strip() for t in e.tasks.split(",") if t.strip()]
    if not (e.perplexity or tasks):
        raise ValueError("eval.every is set but neither eval.perplexity nor eval.tasks is")
    tokenizer = encoding.open_tokenizer(cfg.data.tokenizer)
    texts = read_perplexity_texts(e.perplexity, e.perplexity_docs) if e.perplexity else {}
    for name in tasks:  # fail at start-up, not at the first evaluation
        tasks_lib.get_task(name)

    def evaluate_now(step, params):
        out = {}
        scorer = scoring.Scorer(cfg, params, e.batch_size, max_length=cfg.data.seq_len)
        if texts:
            losses = []
            for name, docs in texts.items():
                ppl = text_perplexity(scorer, tokenizer, docs)["token_perplexity"]
                out[f"eval_ppl/{name}"] = ppl
                losses.append(math.log(ppl))
            out["eval_loss"] = sum(losses) / len(losses)
        if tasks:
            out.update(evaluate(cfg, params, tokenizer, tasks, e.data_dir, e.limit or None,
                                e.batch_size))
        return out

    return evaluate_now


# --------------------------------------------------------------------------- models and output


def load_model(hf: str | None = None, workdir: str | None = None, step: int | None = None):
    """``(config, params)`` from a Hugging Face OpenELM directory or an elmjax run directory."""
    if (hf is None) == (workdir is None):
        raise ValueError("give exactly one of an HF directory or an elmjax workdir")
    if hf is not None:
        from elmjax.interop.hf import load_hf

        return load_hf(hf)
    from elmjax.train.state import load_params

    return load_params(workdir, step=step)


def format_table(results: dict[str, dict]) -> str:
    """A results table: one line per (task, metric) with value and stderr."""
    rows = [("task", "metric", "value", "stderr", "n")]
    for task, row in results.items():
        for metric, value in row.items():
            if metric.endswith("_stderr") or metric in ("samples", "documents"):
                continue
            err = row.get(f"{metric}_stderr")
            n = row.get("samples", row.get("documents", ""))
            rows.append((task, metric, f"{value:.4f}",
                         "-" if err is None or math.isnan(err) else f"{err:.4f}", str(n)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [" | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run_cli(args) -> int:
    """``elmjax eval``: load, score the tasks and perplexity data, print the table, write JSON."""
    if not args.tasks and not args.perplexity:
        raise ValueError("nothing to evaluate: give --tasks and/or --perplexity")
    task_names = [t for t in (args.tasks or "").split(",") if t]
    if task_names == ["all"]:
        task_names = list(DEFAULT_TASKS)
    for name in task_names:
        tasks_lib.get_task(name)
    if task_names and not args.data_dir:
        raise ValueError("--tasks needs --data-dir (where the task files are)")
    tokenizer = encoding.open_tokenizer(args.tokenizer)
    config, params = load_model(args.hf, args.workdir, args.step)
    vocab = (config.model if "model" in config else config).vocab_size
    if tokenizer.vocab_size > vocab:
        raise ValueError(f"tokenizer {args.tokenizer} has {tokenizer.vocab_size} pieces but the "
                         f"model only {vocab} embedding rows")
    scorer = scoring.Scorer(config, params, args.batch_size)
    results = run_tasks(scorer, tokenizer, task_names, args.data_dir, args.limit,
                        add_bos=not args.no_bos) if task_names else {}
    if args.perplexity:
        for name, texts in read_perplexity_texts(args.perplexity, args.perplexity_docs).items():
            results[f"perplexity:{name}"] = text_perplexity(scorer, tokenizer, texts)
    print(format_table(results))
    if args.out:
        report = {"results": results,
                  "model": args.hf or args.workdir, "step": args.step, "tokenizer": args.tokenizer,
                  "data_dir": args.data_dir, "limit": args.limit, "add_bos": not args.no_bos}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, allow_nan=True)
        print(f"wrote {args.out}")
    return 0
