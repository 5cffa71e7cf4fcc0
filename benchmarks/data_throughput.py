"""Data pipeline throughput: raw shards -> packed batches, against plain SentencePiece encoding.

Run from the repository root::

    python benchmarks/data_throughput.py [--seq-len 2048] [--batch 8] [--tokens 3000000]

Measured side by side in one run on the embedded sample corpus (all four native
formats): (1) plain ``SentencePieceProcessor.encode`` of the same documents, in
batches, one thread -- the ceiling for on-the-fly tokenization on one core;
(2) the elmjax pipeline in-process (read, decompress, parse, NFC, filters,
tokenize, mix, pack, batch) on one core; (3) the pipeline with 1..N grain worker
processes. Prints tokens/s and the ratio (2)/(1), and what one host must deliver
to feed OpenELM-1.1B on one H200.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import sentencepiece as spm

from elmjax import config as config_lib
from elmjax.data import mixture, pipeline, sources
from elmjax.data.tokenizer import nfc
from elmjax.model import schedule
from elmjax.presets import base_config, config_module

EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s
MFU = 0.45


def corpus_texts(mix_path):
    """All documents of the mixture, read once (the baseline encodes the same text)."""
    texts = []
    for spec in mixture.load(mix_path):
        stats = sources.SourceStats()
        for path in sources.expand_paths(spec.paths, spec.base_dir):
            texts += [t for _, t in sources.read_shard(path, spec.read_options, stats)]
    return texts


def plain_encode_rate(tokenizer_path, texts, target_tokens, batch_docs=1024):
    """Tokens/s of SentencePiece batch encoding (NFC-normalised input, one thread)."""
    sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
    texts = [nfc(t) for t in texts]
    tokens, start = 0, time.perf_counter()
    while tokens < target_tokens:
        for i in range(0, len(texts), batch_docs):
            ids = sp.encode(texts[i:i + batch_docs], out_type=int, num_threads=1)
            tokens += sum(map(len, ids))
    return tokens / (time.perf_counter() - start)


def pipeline_rate(cfg, target_tokens):
    """Tokens/s of non-padding tokens in packed batches, timed from building the iterator.

    Timing from the start (worker start-up included) keeps the count honest: the
    first batch already needs a packing round and a window per source, so a timer
    started after it would credit work done before it. Over many passes the
    start-up and the blocks still in flight at the end are a few percent.
    """
    start = time.perf_counter()
    it = pipeline.make_train_iterator(cfg, process_index=0, process_count=1)
    tokens = 0
    while tokens < target_tokens:
        tokens += int(next(it)["loss_mask"].sum())
    rate = tokens / (time.perf_counter() - start)
    it.close()
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=10_000_000, help="tokens per measurement")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = ap.parse_args()

    cfg = config_lib.resolve_paths(base_config())
    cfg.model.vocab_size = 4096
    cfg.data.seq_len, cfg.train.global_batch_size, cfg.data.prefetch = args.seq_len, args.batch, 0
    cfg.data.shuffle_buffer = 256
    mix_path, tok_path = cfg.data.mixture, cfg.data.tokenizer
    texts = corpus_texts(mix_path)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"corpus: {cfg.data.mixture} ({len(texts)} documents, "
          f"{sum(map(len, texts)) / 1e6:.1f} M characters), tokenizer {cfg.data.tokenizer}")

    best = lambda f: max(f() for _ in range(args.repeats))  # noqa: E731
    plain = best(lambda: plain_encode_rate(tok_path, texts, args.tokens))
    cfg.data.num_workers = 0
    inproc = best(lambda: pipeline_rate(cfg, args.tokens))
    print(f"plain SentencePiece encode, 1 thread : {plain / 1e6:6.2f} M tokens/s")
    print(f"pipeline in-process (1 core)         : {inproc / 1e6:6.2f} M tokens/s "
          f"= {100 * inproc / plain:.0f}% of plain encoding")
    for w in args.workers:
        cfg.data.num_workers = w
        rate = best(lambda: pipeline_rate(cfg, args.tokens))
        print(f"pipeline, {w} worker process(es)      : {rate / 1e6:6.2f} M tokens/s "
              f"({rate / inproc:.2f}x in-process)")

    big = config_module(os.path.join(EXPERIMENTS, "openelm_1_1b.py")).get_config()
    fpt = schedule.flops_per_token(big.model, 2048)
    need = H200_BF16_PEAK * MFU / fpt
    print(f"OpenELM-1.1B: {fpt / 1e9:.2f} GFLOP/token (seq 2048) -> one H200 at {MFU:.0%} MFU "
          f"of {H200_BF16_PEAK / 1e12:.0f} TFLOP/s consumes {need / 1e3:.1f} k tokens/s; "
          f"the in-process pipeline delivers {inproc / need:.1f}x that")


if __name__ == "__main__":
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    main()
