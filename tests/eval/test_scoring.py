"""Log-likelihood scoring and perplexity agree with a direct forward pass."""

import functools
import math

import jax
import numpy as np
import pytest

import elmjax
from elmjax.eval import scoring
from elmjax.model.openelm import model_section


@functools.lru_cache(maxsize=None)
def _jitted_forward(cfg):
    return jax.jit(lambda p, t: elmjax.forward(cfg, p, t))


def direct_logits(cfg, params, seq):
    """float32 logits ``[len(seq), vocab]`` of one sequence (right-padded to 64; causal)."""
    tokens = np.zeros((1, 64), np.int32)
    tokens[0, :len(seq)] = seq
    return np.asarray(_jitted_forward(model_section(cfg))(params, tokens))[0, :len(seq)]


def direct_scores(cfg, params, ctx, cont, max_length):
    """Summed log p(cont | ctx) and greedy flag from a direct forward pass."""
    whole = (list(ctx) + list(cont))[-(max_length + 1):]
    logits = direct_logits(cfg, params, whole[:-1])
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    n = len(whole) - 1
    rows = range(n - len(cont), n)
    total = sum(float(logp[r, whole[r + 1]]) for r in rows)
    greedy = all(int(np.argmax(logits[r])) == whole[r + 1] for r in rows)
    return total, greedy


def test_loglikelihood_matches_forward_pass(tiny_lm):
    cfg, params = tiny_lm
    rng = np.random.default_rng(0)
    requests = []
    for ctx_len, cont_len in [(1, 1), (5, 3), (20, 7), (40, 30), (80, 5), (3, 64), (63, 1)]:
        requests.append((rng.integers(3, 128, ctx_len).tolist(),
                         rng.integers(3, 128, cont_len).tolist()))
    # A continuation that is the model's greedy choice.
    ctx = rng.integers(3, 128, 6).tolist()
    cont = []
    for _ in range(4):
        cont.append(int(np.argmax(direct_logits(cfg, params, ctx + cont)[-1])))
    requests.append((ctx, cont))

    scorer = scoring.Scorer(cfg, params, batch_size=3, buckets=(16, 32, 64))
    assert scorer.batch_size % jax.device_count() == 0
    got = scorer.loglikelihood(requests)
    for (ctx, cont), (ll, greedy) in zip(requests, got):
        want_ll, want_greedy = direct_scores(cfg, params, ctx, cont, 64)
        assert ll == pytest.approx(want_ll, rel=1e-4, abs=1e-3)
        assert greedy == want_greedy
    assert got[-1][1] is True


def test_scoring_compiles_once_per_bucket(tiny_lm):
    cfg, params = tiny_lm
    scorer = scoring.Scorer(cfg, params, batch_size=8, buckets=(32, 64))
    fn = scoring.jitted_scorer(scorer.model)
    before = fn._cache_size()
    rng = np.random.default_rng(1)
    requests = [(rng.integers(3, 128, n).tolist(), [5, 6]) for n in range(1, 60, 2)]
    scorer.loglikelihood(requests)
    assert fn._cache_size() - before <= 2


def test_bad_requests_are_rejected(tiny_lm):
    cfg, params = tiny_lm
    scorer = scoring.Scorer(cfg, params)
    with pytest.raises(ValueError, match="empty continuation"):
        scorer.loglikelihood([([1], [])])
    with pytest.raises(ValueError, match="empty context"):
        scorer.loglikelihood([([], [4])])


def test_rolling_windows_predict_every_token_once():
    windows = scoring.rolling_windows(list(range(10)), -1, 4)
    assert windows == [([-1], [0, 1, 2, 3]), ([3], [4, 5, 6, 7]), ([5, 6, 7], [8, 9])]
    for n in (1, 4, 5, 17):
        ws = scoring.rolling_windows(list(range(n)), -1, 4)
        assert sum((cont for _, cont in ws), []) == list(range(n))
        assert all(len(ctx) + len(cont) - 1 <= 4 for ctx, cont in ws)
    assert scoring.rolling_windows([], -1, 4) == []


def test_rolling_windows_match_lm_eval():
    utils = pytest.importorskip("lm_eval.utils")
    for n, width in [(1, 4), (9, 4), (10, 4), (37, 8), (100, 16)]:
        tokens = list(range(100, 100 + n))
        theirs = [utils.make_disjoint_window(w)
                  for w in utils.get_rolling_token_windows(tokens, 1, width, 1)]
        assert scoring.rolling_windows(tokens, 1, width) == [tuple(w) for w in theirs]


def test_perplexity_is_exp_mean_token_loss(tiny_lm):
    cfg, params = tiny_lm
    rng = np.random.default_rng(2)
    docs = [rng.integers(3, 128, n).tolist() for n in (5, 17, 63, 2)]
    losses = []
    for doc in docs:
        logp = np.asarray(jax.nn.log_softmax(direct_logits(cfg, params, [1] + doc[:-1]), axis=-1))
        losses.extend(-logp[i, t] for i, t in enumerate(doc))
    want = math.exp(float(np.mean(losses)))
    assert scoring.perplexity(cfg, params, docs, prefix_token=1) == pytest.approx(want, rel=1e-4)


def test_rolling_loglikelihood_of_long_document(tiny_lm):
    cfg, params = tiny_lm
    doc = np.random.default_rng(3).integers(3, 128, 150).tolist()
    scorer = scoring.Scorer(cfg, params, batch_size=2)
    (got,) = scorer.loglikelihood_rolling([doc], prefix_token=1)
    want = sum(direct_scores(cfg, params, ctx, cont, 64)[0]
               for ctx, cont in scoring.rolling_windows(doc, 1, 64))
    assert got == pytest.approx(want, rel=1e-4)
