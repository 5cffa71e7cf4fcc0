"""``elmjax data inspect``: read a mixture through the pipeline and report what came out."""

from __future__ import annotations

import itertools
import time


from elmjax.data import mixture, pipeline
from elmjax.data.tokenizer import Tokenizer


def inspect_mixture(cfg, mixture_path: str | None = None, batches: int = 20,
                    one_pass: bool = False) -> dict:
    """Runs the pipeline (as the only host) and returns a JSON-serialisable report.

    Takes the run config, the mixture (default ``cfg.data.mixture``) and either
    a number of ``batches`` or ``one_pass`` (every shard read once, unshuffled:
    exact totals). Returns ``{"mixture", "mode", "batches", "batch_shape",
    "tokens", "padding_fraction", "seconds", "tokens_per_second", "sample",
    "sources": {name: {documents_read, documents_kept, documents_filtered,
    records_skipped, tokens, tokens_packed, chunks, tokens_dropped, weight,
    proportion, tokens_per_second}}}`` where ``proportion`` is the realised share of packed
    tokens and a source's ``tokens_per_second`` its packed tokens over the wall time (what it
    delivered, local or remote, while all sources were read together).
    """
    path = mixture_path or cfg.data.mixture
    weights = {s.name: s.weight for s in mixture.load(path)}
    start = time.perf_counter()
    it = pipeline.make_dataset(cfg, path, process_index=0, process_count=1,
                               one_pass=one_pass).__iter__()
    n, tokens, cells, sample = 0, 0, 0, None
    for batch in (it if one_pass else itertools.islice(it, batches)):
        n += 1
        tokens += int(batch["loss_mask"].sum())
        cells += batch["loss_mask"].size
        if sample is None:
            row = batch["inputs"][0][batch["segment_ids"][0] == 1]
            sample = Tokenizer(cfg.data.tokenizer).decode(row)
    seconds = time.perf_counter() - start
    stats = pipeline.source_stats(it)
    it.close()
    packed = sum(s["tokens_packed"] for s in stats.values()) or 1
    return {
        "mixture": str(path), "mode": "one_pass" if one_pass else "sample", "batches": n,
        "batch_shape": [cfg.train.global_batch_size, cfg.data.seq_len], "tokens": tokens,
        "padding_fraction": round(1 - tokens / cells, 4) if cells else 0.0,
        "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1),
        "sample": sample,
        "sources": {name: dict(s, weight=round(weights.get(name, 0.0), 4),
                               proportion=round(s["tokens_packed"] / packed, 4),
                               tokens_per_second=round(s["tokens_packed"] / seconds, 1))
                    for name, s in stats.items()},
    }


def format_report(report: dict, sample_chars: int = 400) -> str:
    """The report of :func:`inspect_mixture` as a table for a terminal."""
    head = (f"{'source':<14}{'read':>9}{'kept':>9}{'filtered':>10}{'skipped':>9}"
            f"{'tokens':>12}{'packed':>12}{'weight':>8}{'realised':>10}{'tokens/s':>11}")
    lines = [f"mixture {report['mixture']} ({report['mode']}): {report['batches']} batches of "
             f"{report['batch_shape'][0]}x{report['batch_shape'][1]}", head, "-" * len(head)]
    details = []
    for name, s in report["sources"].items():
        filtered, skipped = sum(s["documents_filtered"].values()), sum(s["records_skipped"].values())
        lines.append(f"{name:<14}{s['documents_read']:>9}{s['documents_kept']:>9}{filtered:>10}"
                     f"{skipped:>9}{s['tokens']:>12}{s['tokens_packed']:>12}{s['weight']:>8.3f}"
                     f"{s['proportion']:>10.3f}{s['tokens_per_second']:>11,.0f}")
        reasons = {**s["documents_filtered"], **s["records_skipped"]}
        if reasons:
            details.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    if details:
        lines += ["filtered / skipped by reason:"] + details
    lines.append(f"{report['tokens']:,} tokens in {report['seconds']:.2f} s = "
                 f"{report['tokens_per_second']:,.0f} tokens/s (from start-up; padding "
                 f"{100 * report['padding_fraction']:.1f}%)")
    if report["sample"] is not None:
        lines += ["sample (first document of the first row):",
                  "  " + report["sample"][:sample_chars].replace("\n", "\n  ")]
    return "\n".join(lines)
