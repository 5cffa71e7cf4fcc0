"""Evaluation throughput on 25-shot ARC-Challenge prompts: elmjax's evaluator vs lm-eval + adapter.

The model is OpenELM-270M's shape with random weights (throughput does not depend on
the weights), computing in float32 on CPU; the tokenizer is the embedded sample
corpus's 4096-piece SentencePiece model. The documents are ARC-Challenge-shaped
(question of ~20 words, four answers of ~4 words; 30 training documents to draw the
25 shots from), written from the sample corpus's words in the hub's layout, so the
25-shot prompts are ~1,500 tokens long, as real ones are.

Both sides score the same requests with the same model: ``elmjax`` is
``harness.run_tasks`` (its prompts, one scorer call for all requests); ``lm-eval`` is
``lm_eval.simple_evaluate`` with ``--model elmjax`` on lm-eval's own ``arc_challenge``
task file over the same local files (``elmjax.eval.lm_eval.simple_evaluate_suites``),
so the difference is lm-eval's own work (loading, building contexts, instance
bookkeeping) around the same scorer. A warm-up run compiles the scorer first; each
side is then timed once. Tokens/s counts model input tokens (prompt + continuation).

    PYTHONPATH=. python benchmarks/eval_throughput.py [--docs 3] [--shots 25]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time

import jax

from elmjax import config as config_lib
from elmjax.eval import encoding, harness, scoring, tasks
from elmjax.model.openelm import init_params

TOKENIZER = "data_mixtures/samples/tokenizer.model"


def words() -> list[str]:
    with open("data_mixtures/samples/jsonl/poems.jsonl", encoding="utf-8") as f:
        text = " ".join(json.loads(line)["text"] for line in f)
    return [w.strip(".,;:!?'\"()").lower() for w in text.split() if w.isalpha()]


def write_arc(root: str, n_test: int, n_train: int = 30, seed: int = 0) -> None:
    """ARC-Challenge-shaped documents in the hub layout: D/arc_challenge/{train,test}.jsonl."""
    rng = random.Random(seed)
    vocab = words()

    def doc(i):
        question = " ".join(rng.choice(vocab) for _ in range(rng.randint(14, 26)))
        return {"id": f"q{i}", "question": question.capitalize() + "?",
                "choices": {"text": [" ".join(rng.choice(vocab) for _ in range(rng.randint(2, 6)))
                                     for _ in range(4)], "label": ["A", "B", "C", "D"]},
                "answerKey": "ABCD"[i % 4]}

    os.makedirs(os.path.join(root, "arc_challenge"), exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with open(os.path.join(root, "arc_challenge", f"{split}.jsonl"), "w") as f:
            f.writelines(json.dumps(doc(i)) + "\n" for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=3, help="ARC-Challenge test documents")
    ap.add_argument("--shots", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    cfg = config_lib.load("experiments/openelm_270m.py")
    cfg.model.dtype = "float32"
    params = init_params(cfg, jax.random.key(0))
    tok = encoding.open_tokenizer(TOKENIZER)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        write_arc(data, args.docs)
        _, reqs = tasks.get_task("arc_challenge").requests(data, args.shots)
        pairs = [r for per_doc in reqs for r in per_doc]
        encoded = encoding.encode_pairs(tok, pairs)
        n_req = len(encoded)
        n_tok = sum(min(len(c) + len(x), cfg.model.max_context_length + 1) - 1
                    for c, x in encoded)
        print(f"{platform.node()} ({os.cpu_count()} CPUs, jax {jax.__version__}): OpenELM-270M "
              f"shape, random weights, float32; {args.docs} documents x 4 choices = {n_req} "
              f"requests of {n_tok / n_req:.0f} tokens on average ({args.shots}-shot), "
              f"batch {args.batch_size}")

        scorer = scoring.Scorer(cfg, params, args.batch_size)
        t0 = time.perf_counter()
        harness.run_tasks(scorer, tok, ["arc_challenge"], data, limit=1, num_fewshot=args.shots)
        print(f"warm-up (compile + 1 document): {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        ours = harness.run_tasks(scorer, tok, ["arc_challenge"], data, num_fewshot=args.shots)
        t_ours = time.perf_counter() - t0

        from elmjax.eval import lm_eval as adapter
        from elmjax.interop.hf import save_hf

        hf_dir = os.path.join(tmp, "hf")
        save_hf(hf_dir, cfg, params)
        os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                          HF_DATASETS_CACHE=os.path.join(tmp, "hf_cache"))
        t0 = time.perf_counter()
        out = adapter.simple_evaluate_suites(
            f"pretrained={hf_dir},tokenizer={TOKENIZER},batch_size={args.batch_size}",
            ["arc_challenge"], data, num_fewshot=args.shots, bootstrap_iters=0,
            log_samples=False)
        t_lm = time.perf_counter() - t0
        theirs = out["results"][f"elmjax_arc_challenge_{args.shots}shot"]["acc_norm,none"]
        assert abs(theirs - ours["arc_challenge"]["acc_norm"]) < 1e-9, (theirs, ours)

    print(f"{'':24s} {'seconds':>8s} {'requests/s':>11s} {'tokens/s':>9s}")
    for name, t in (("elmjax evaluator", t_ours), ("lm-eval + elmjax model", t_lm)):
        print(f"{name:24s} {t:8.1f} {n_req / t:11.3f} {n_tok / t:9.0f}")
    print(f"elmjax / lm-eval throughput: {t_lm / t_ours:.2f}x (same acc_norm: "
          f"{ours['arc_challenge']['acc_norm']:.3f})")


if __name__ == "__main__":
    main()
