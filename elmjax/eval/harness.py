"""The evaluation loop: tasks and held-out perplexity for one model, plus the ``elmjax eval`` glue.

For the trainer (every N steps)::

    metrics = evaluate(config, params, tokenizer, ["arc_easy", "openllm"], data_dir, limit=500)
    # {"arc_easy/acc": 0.41, "arc_easy/acc_stderr": 0.02, ..., "openllm/average": 31.2}
    ppl = elmjax.eval.perplexity(config, params, token_docs)

For people: ``elmjax eval --hf DIR --tokenizer tok.model --tasks zero_shot,openllm --data-dir D``
(suites, groups and tasks: ``elmjax.eval.suites``; prompts: ``elmjax.eval.prompts``).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Sequence

from elmjax import storage
from elmjax.eval import encoding, prompts, scoring, suites
from elmjax.eval import tasks as tasks_lib

# --------------------------------------------------------------------------- tasks


def run_tasks(scorer: scoring.Scorer, tokenizer, task_names: Sequence[str], data_dir: str,
              limit: int | None = None, add_bos: bool = True, num_fewshot: int | None = None,
              seed: int = prompts.FEWSHOT_SEED) -> dict[str, dict]:
    """Scores tasks, groups and suites: ``{key: {metric: v, metric_stderr: e, "samples": n}}``.

    scorer: a ``scoring.Scorer`` for the model; tokenizer: from ``encoding.open_tokenizer``;
    task_names: suite, group and task names (``elmjax.eval.suites``); limit: the first
    N documents of each task (all when None); add_bos: prepend BOS to every context,
    as OpenELM's evaluation did; num_fewshot: overrides every shot count; seed:
    lm-eval's ``fewshot_random_seed``. Keys are lm-eval's task and group names
    (``suites.result_keys``). Every request of every task is scored in one call, so
    batches fill across tasks.
    """
    runs = suites.expand(task_names, num_fewshot)
    keys = suites.result_keys(runs)
    jobs = {}  # (task, shots) -> (examples, requests per example)
    for run in runs:
        for name in suites.leaf_tasks(run):
            if (name, run.shots) not in jobs:
                jobs[(name, run.shots)] = tasks_lib.get_task(name).requests(
                    data_dir, run.shots, limit, seed)
    pairs = [r for _, reqs in jobs.values() for per_doc in reqs for r in per_doc]
    scores = scorer.loglikelihood(encoding.encode_pairs(tokenizer, pairs, add_bos=add_bos))
    results, k = {}, 0
    for (name, shots), (examples, reqs) in jobs.items():
        task = tasks_lib.get_task(name)
        per_metric = {m: [] for m in task.metrics}
        for ex, per_doc in zip(examples, reqs):
            lls = [ll for ll, _ in scores[k:k + len(per_doc)]]
            k += len(per_doc)
            for metric, value in task.score(ex, lls, task.metrics).items():
                per_metric[metric].append(value)
        row = {}
        for metric, values in per_metric.items():
            row[metric], row[f"{metric}_stderr"] = prompts.mean_and_stderr(values)
        row["samples"] = len(examples)
        results[keys[(name, shots)]] = row
    for run in runs:
        for group in (run.name, *suites.SUBGROUPS.get(run.name, ())):
            if group in suites.GROUPS:
                members = [results[keys[(t, run.shots)]] for t in suites.GROUPS[group]]
                results[keys[(group, run.shots)]] = suites.aggregate(members, ("acc",))
    return results


def evaluate(config, params, tokenizer, tasks: Sequence[str], data_dir: str,
             limit: int | None = None, batch_size: int = 8, add_bos: bool = True,
             num_fewshot: int | None = None) -> dict[str, float]:
    """Task metrics for the training loop: a flat ``{"task/metric": value}`` dict.

    config: a run config or its model section; params: the parameter tree (any
    sharding); tokenizer: a tokenizer object or a SentencePiece ``.model`` path;
    tasks: suite, group and task names (``elmjax.eval.suites``); data_dir: their
    files or TFDS datasets; limit: documents per task (all when None). Keys are
    ``<key>/<metric>`` and ``<key>/<metric>_stderr`` per result key, and
    ``<suite>/average`` (percent) per suite named.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = encoding.open_tokenizer(str(tokenizer))
    scorer = scoring.Scorer(config, params, batch_size)
    results = run_tasks(scorer, tokenizer, tasks, data_dir, limit, add_bos, num_fewshot)
    out = {f"{t}/{k}": float(v) for t, row in results.items() for k, v in row.items()
           if k != "samples"}
    runs = suites.expand(tasks, num_fewshot)
    for suite, table in suites.suite_tables(results, runs, tasks, num_fewshot).items():
        out[f"{suite}/average"] = table["average"]
    return out


# --------------------------------------------------------------------------- perplexity


def _texts_of_file(path: str, limit: int | None) -> list[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_shard(path) as f:
            table = pq.read_table(f)
        field = "text" if "text" in table.column_names else "content"
        texts = table.column(field).to_pylist()
    elif path.endswith((".jsonl", ".json")):
        with storage.open_file(path, "r") as f:
            if path.endswith(".jsonl"):
                records = [json.loads(line) for line in f if line.strip()]
            else:
                records = json.load(f)
        texts = [r if isinstance(r, str) else r.get("text", r.get("content")) for r in records]
    else:  # plain text: one document per file
        with storage.open_file(path, "r") as f:
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
    if not storage.isfile(path):
        raise FileNotFoundError(f"perplexity data not found: {path}")
    if path.endswith((".yaml", ".yml")):
        return _texts_of_mixture(path, limit if limit is not None else 1000)
    return {path.rstrip("/").rsplit("/", 1)[-1]: _texts_of_file(path, limit)}


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
    suites.expand(tasks)  # fail at start-up (unknown names), not at the first evaluation

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


def format_suites(tables: dict[str, dict], shots: dict[str, int]) -> str:
    """One table per suite: each task's shots, metric and value in percent, then the average."""
    blocks = []
    for suite, table in tables.items():
        rows = [(suite, "shots", "metric", "%")]
        for key, value in table["tasks"].items():
            rows.append((key, str(shots[key]), table["metrics"][key], f"{value:.2f}"))
        rows.append(("average", "", "", f"{table['average']:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [" | ".join(c.ljust(w) if i != 3 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        lines.insert(len(lines) - 1, "-+-".join("-" * w for w in widths))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run_cli(args) -> int:
    """``elmjax eval``: load, score the tasks and perplexity data, print the tables, write JSON.

    args: ``tasks`` (comma-separated suite, group and task names; ``all`` = the
    zero-shot suite), ``num_fewshot``, ``data_dir``, ``limit``, ``perplexity``,
    ``perplexity_docs``, ``batch_size``, ``no_bos``, ``out`` and the model
    (``hf`` or ``workdir`` + ``step``, ``tokenizer``). The JSON holds ``results``
    (``{key: {metric: value}}``), ``n-shot`` (``{key: shots}``) and ``suites``.
    """
    if not args.tasks and not args.perplexity:
        raise ValueError("nothing to evaluate: give --tasks and/or --perplexity")
    task_names = ["zero_shot" if t == "all" else t for t in (args.tasks or "").split(",") if t]
    num_fewshot = getattr(args, "num_fewshot", None)
    runs = suites.expand(task_names, num_fewshot)
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
                        add_bos=not args.no_bos, num_fewshot=num_fewshot) if task_names else {}
    shots = {key: n for (_, n), key in suites.result_keys(runs).items()}
    tables = suites.suite_tables(results, runs, task_names, num_fewshot)
    if args.perplexity:
        for name, texts in read_perplexity_texts(args.perplexity, args.perplexity_docs).items():
            results[f"perplexity:{name}"] = text_perplexity(scorer, tokenizer, texts)
    print(format_table(results))
    if tables:
        print()
        print(format_suites(tables, shots))
    if args.out:
        report = {"results": results, "n-shot": shots, "suites": tables,
                  "model": args.hf or args.workdir, "step": args.step, "tokenizer": args.tokenizer,
                  "data_dir": args.data_dir, "limit": args.limit, "add_bos": not args.no_bos,
                  "fewshot_seed": prompts.FEWSHOT_SEED}
        with storage.open_file(storage.output_path(args.out), "w") as f:
            json.dump(report, f, indent=2, allow_nan=True)
        print(f"wrote {args.out}")
    return 0
