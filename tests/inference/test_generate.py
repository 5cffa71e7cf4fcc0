"""generate(): cached decoding equals re-forwarding, batching, stopping, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import elmjax
from elmjax.model.openelm import forward, model_section
from tests.conftest import tiny_model

PROMPTS = [[1, 5, 9, 33, 7], [1, 200, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9], [1]]
NEW = 8


def greedy_by_reforwarding(m, params, prompt, n, width=32):
    """Greedy tokens by running the full model on the growing sequence (no cache)."""
    fwd = jax.jit(forward, static_argnums=0)  # one shape: the sequence is right-padded
    m = model_section(m)
    seq = list(prompt)
    for _ in range(n):
        buf = np.zeros((1, width), np.int32)
        buf[0, :len(seq)] = seq
        seq.append(int(jnp.argmax(fwd(m, params, buf)[0, len(seq) - 1])))
    return seq[len(prompt):]


@pytest.fixture(scope="module")
def batched(lm):
    m, params = lm
    return elmjax.generate(m, params, PROMPTS, NEW)


def test_cached_greedy_equals_reforwarding(lm, batched):
    m, params = lm
    for prompt, got in zip(PROMPTS[:2], batched.to_lists()):
        assert got == greedy_by_reforwarding(m, params, prompt, NEW)


def test_batch_equals_each_prompt_alone(lm, batched):
    m, params = lm
    assert batched.tokens.shape == (len(PROMPTS), NEW)
    for prompt, got in zip(PROMPTS, batched.to_lists()):
        assert elmjax.generate(m, params, [prompt], NEW, pad_multiple=16).to_lists() == [got]


def test_streaming_gives_the_same_tokens(lm, batched):
    m, params = lm
    cols = []
    out = elmjax.generate(m, params, PROMPTS, NEW, callback=lambda t, a: cols.append(t.copy()))
    np.testing.assert_array_equal(out.tokens, batched.tokens)
    np.testing.assert_array_equal(np.stack(cols, 1), batched.tokens)


def test_stop_tokens_end_rows(lm, batched):
    m, params = lm
    # the token that first appears latest (but before the end) in some row: that row stops early
    stop = max((j, int(t)) for row in batched.tokens for j, t in enumerate(row[:-1])
               if t not in row[:j])[1]
    out = elmjax.generate(m, params, PROMPTS, NEW, stop_tokens=[stop], pad_id=0)
    for row, ref, n in zip(out.tokens, batched.tokens, out.lengths):
        hits = np.flatnonzero(ref == stop)
        want = hits[0] + 1 if hits.size else NEW
        assert n == want
        np.testing.assert_array_equal(row[:n], ref[:n])
        assert (row[n:] == 0).all()
    assert out.lengths.min() < NEW


def test_max_length_caps_prompt_plus_generated(lm):
    m, params = lm
    out = elmjax.generate(m, params, PROMPTS, NEW, max_length=10)
    np.testing.assert_array_equal(out.lengths, [5, 7, 1, 8])
    with pytest.raises(ValueError, match="max_length"):
        elmjax.generate(m, params, PROMPTS, NEW, max_length=9)


def test_sampling_is_deterministic_per_key(lm):
    m, params = lm
    kw = dict(temperature=1.0, top_k=20, top_p=0.95)
    a = elmjax.generate(m, params, PROMPTS, NEW, key=jax.random.key(7), **kw)
    b = elmjax.generate(m, params, PROMPTS, NEW, key=jax.random.key(7), **kw)
    c = elmjax.generate(m, params, PROMPTS, NEW, key=jax.random.key(8), **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    with pytest.raises(ValueError, match="key"):
        elmjax.generate(m, params, PROMPTS, NEW, temperature=1.0)


def test_bfloat16_compute_runs(lm):
    m, params = lm
    m16 = tiny_model(dtype="bfloat16")
    out = elmjax.generate(m16, params, PROMPTS[:2], 4)
    assert out.tokens.shape == (2, 4) and (out.lengths == 4).all()
