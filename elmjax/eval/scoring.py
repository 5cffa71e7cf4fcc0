"""Log-likelihood scoring of token sequences, batched into a few fixed shapes.

A request is a pair of token lists ``(context, continuation)``. Its score is the
summed log-probability of ``continuation`` given ``context`` and whether every
continuation token is the model's argmax (greedy) choice. The model sees
``(context + continuation)[:-1]``, truncated on the left to the context window,
exactly as lm-evaluation-harness's causal models do.

Requests are sorted by length, cut into batches of ``batch_size`` rows and
right-padded to the smallest *bucket* length that fits (powers of two up to the
model's context window); the output head runs only at the last ``k`` positions of
each row, ``k`` the batch's longest continuation rounded up to a power of two. A
whole evaluation compiles one program per (length bucket, ``k``) pair used -- a
handful -- not one per request, and a 25-shot prompt of 2048 tokens computes
logits for its few continuation tokens, not for all 2048 (``[b, k, vocab]``
instead of ``[b, 2048, vocab]`` floats). With more than one device the batch is sharded over
all of them (params keep their own sharding, or are replicated if they live on
the host).

Rolling log-likelihood splits a long document into windows of the context
length the way lm-evaluation-harness's ``loglikelihood_rolling`` does: every
token is predicted exactly once, the first from a prefix token (BOS) and later
windows with as much preceding context as fits.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from elmjax.model.openelm import forward, model_section

Tokens = Sequence[int]


def default_buckets(max_length: int, smallest: int = 32) -> tuple[int, ...]:
    """Padded lengths: powers of two from ``smallest`` below ``max_length``, then ``max_length``."""
    out, n = [], smallest
    while n < max_length:
        out.append(n)
        n *= 2
    out.append(max_length)
    return tuple(out)


# One entry per model architecture (the frozen model section, not the weights): a run's
# evaluations every N steps reuse one entry, and a process comparing models uses a few. Each
# entry keeps its compiled programs (one per length bucket and continuation bucket), so the
# cache is bounded: a process going through many shapes (a scaling sweep, the test suite)
# drops the oldest instead of keeping every program; 8 architectures at once is more than any
# command uses.
@functools.lru_cache(maxsize=8)
def jitted_scorer(m):
    """The jitted ``score(params, tokens, at, targets, mask) -> (logprob sums [b], all greedy [b])``
    for one (hashable, frozen) model section.

    tokens: int ``[b, t]`` model inputs; at: int ``[b, k]`` the input positions whose
    next-token prediction is scored; targets: int ``[b, k]`` the tokens predicted
    there; mask: bool ``[b, k]`` which of the ``k`` slots count. The head runs only at
    ``at`` (``[b, k, vocab]`` logits, not ``[b, t, vocab]``).
    """

    def score(params, tokens, at, targets, mask):
        logits = forward(m, params, tokens, logits_at=at)  # float32 [b, k, v]
        target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        logprob = target_logit - jax.nn.logsumexp(logits, axis=-1)
        greedy = jnp.argmax(logits, axis=-1) == targets
        total = jnp.sum(jnp.where(mask, logprob, 0.0), axis=-1)
        all_greedy = jnp.all(greedy | ~mask, axis=-1)
        return total, all_greedy

    return jax.jit(score)


class Scorer:
    """Scores ``(context, continuation)`` token pairs with one model.

    config: a run config or its ``model`` section; params: the parameter tree;
    batch_size: rows per compiled batch (rounded up to a multiple of the device
    count); max_length: the context window (default ``model.max_context_length``);
    buckets: padded lengths (default powers of two up to ``max_length``).
    """

    def __init__(self, config, params, batch_size: int = 8, max_length: int | None = None,
                 buckets: Sequence[int] | None = None):
        self.model = model_section(config)
        self.max_length = int(max_length or self.model.max_context_length)
        self.buckets = tuple(sorted(buckets or default_buckets(self.max_length)))
        if self.buckets[-1] < self.max_length:
            raise ValueError(f"the largest bucket ({self.buckets[-1]}) is shorter than "
                             f"max_length={self.max_length}")
        devices = jax.devices()
        self.batch_size = -(-max(1, int(batch_size)) // len(devices)) * len(devices)
        self.mesh = Mesh(np.array(devices), ("data",)) if len(devices) > 1 else None
        self.params = self._place(params)
        self._fn = jitted_scorer(self.model)

    def _place(self, params):
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, params)
        devices = set(self.mesh.devices.flat)
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def place(x):
            if isinstance(x, jax.Array) and x.sharding.device_set == devices:
                return x  # already laid out over the mesh (e.g. FSDP in training)
            return jax.device_put(x, replicated)

        return jax.tree.map(place, params)

    def _put(self, x: np.ndarray):
        if self.mesh is None:
            return jnp.asarray(x)
        return jax.device_put(x, NamedSharding(self.mesh, PartitionSpec("data")))

    def bucket(self, length: int) -> int:
        """The padded length for a model input of ``length`` tokens."""
        for b in self.buckets:
            if b >= length:
                return b
        raise ValueError(f"input of {length} tokens exceeds max_length={self.max_length}")

    def loglikelihood(self, requests: Sequence[tuple[Tokens, Tokens]]) -> list[tuple[float, bool]]:
        """``[(context_ids, continuation_ids)]`` -> ``[(sum log p(continuation), is_greedy)]``.

        Each continuation must be non-empty and at most ``max_length`` tokens; the
        context is truncated on the left so that the model input fits the window.
        An empty context is not allowed (give a prefix token such as BOS).
        """
        rows = []
        for i, (ctx, cont) in enumerate(requests):
            ctx, cont = list(ctx), list(cont)
            if not cont:
                raise ValueError(f"request {i}: empty continuation")
            if not ctx:
                raise ValueError(f"request {i}: empty context (prepend a prefix token such as BOS)")
            if len(cont) > self.max_length:
                raise ValueError(f"request {i}: continuation of {len(cont)} tokens exceeds "
                                 f"max_length={self.max_length}")
            whole = (ctx + cont)[-(self.max_length + 1):]
            rows.append((i, whole, len(cont)))
        # Longest first: batches of similar length, and the first batch shows memory trouble early.
        rows.sort(key=lambda r: -len(r[1]))
        out: list = [None] * len(rows)
        start = 0
        while start < len(rows):
            width = self.bucket(len(rows[start][1]) - 1)
            batch = rows[start:start + self.batch_size]
            # Continuation slots: a power of two, so batches share a few compiled programs.
            k = min(width, 1 << (max(n_cont for _, _, n_cont in batch) - 1).bit_length())
            tokens = np.zeros((self.batch_size, width), np.int32)
            at = np.zeros((self.batch_size, k), np.int32)
            targets = np.zeros((self.batch_size, k), np.int32)
            mask = np.zeros((self.batch_size, k), bool)
            for r, (_, whole, n_cont) in enumerate(batch):
                n = len(whole) - 1
                tokens[r, :n] = whole[:-1]
                # The last k input positions of the row (clamped at 0); the last n_cont count.
                pos = np.maximum(np.arange(n - k, n), 0)
                at[r] = pos
                targets[r] = np.asarray(whole[1:], np.int32)[pos]
                mask[r, k - n_cont:] = True
            total, greedy = self._fn(self.params, self._put(tokens), self._put(at),
                                     self._put(targets), self._put(mask))
            total, greedy = np.asarray(total), np.asarray(greedy)
            for r, (i, _, _) in enumerate(batch):
                out[i] = (float(total[r]), bool(greedy[r]))
            start += len(batch)
        return out

    def loglikelihood_rolling(self, docs: Sequence[Tokens], prefix_token: int) -> list[float]:
        """Summed log-probability of every token of each document ``[docs]`` -> ``[docs]``.

        Documents longer than the window are scored in rolling windows
        (``rolling_windows``); the first token is conditioned on ``prefix_token``.
        Empty documents score 0.
        """
        pairs, owner = [], []
        for d, doc in enumerate(docs):
            for w in rolling_windows(doc, prefix_token, self.max_length):
                pairs.append(w)
                owner.append(d)
        totals = [0.0] * len(docs)
        for d, (ll, _) in zip(owner, self.loglikelihood(pairs)):
            totals[d] += ll
        return totals


def rolling_windows(tokens: Tokens, prefix_token: int,
                    max_length: int) -> list[tuple[list[int], list[int]]]:
    """Disjoint ``(context, continuation)`` windows that predict every token once.

    The first window predicts the first ``min(max_length, len)`` tokens from
    ``[prefix_token]``; each later window predicts up to ``max_length`` new
    tokens, its context being the tokens just before them, so that every model
    input is a full ``max_length`` window (lm-evaluation-harness's rolling
    windows with ``context_len=1``).
    """
    tokens = list(tokens)
    if not tokens:
        return []
    first = min(max_length, len(tokens))
    windows = [([prefix_token], tokens[:first])]
    done = first
    while done < len(tokens):
        take = min(len(tokens) - done, max_length)
        end = done + take
        windows.append((tokens[end - max_length - 1:end - take], tokens[done:end]))
        done = end
    return windows


def loglikelihood(config, params, requests: Sequence[tuple[Tokens, Tokens]],
                  batch_size: int = 8) -> list[tuple[float, bool]]:
    """``[(context_ids, continuation_ids)]`` -> ``[(sum log p(continuation | context), is_greedy)]``.

    A one-shot convenience over ``Scorer``; see ``Scorer.loglikelihood``.
    """
    return Scorer(config, params, batch_size).loglikelihood(requests)


def perplexity(config, params, token_docs: Sequence[Tokens], prefix_token: int = 1,
               batch_size: int = 8) -> float:
    """Token perplexity ``exp(-sum log p / number of tokens)`` over documents.

    token_docs: documents as token lists (without a leading BOS: every token is
    predicted, the first from ``prefix_token``, LLaMA's BOS = 1 by default);
    documents longer than the context window are scored in rolling windows.
    Cheap enough to call from the training loop every N steps.
    """
    scorer = Scorer(config, params, batch_size)
    total = sum(scorer.loglikelihood_rolling(token_docs, prefix_token))
    count = sum(len(d) for d in token_docs)
    if count == 0:
        raise ValueError("perplexity: no tokens to score")
    return math.exp(-total / count)
