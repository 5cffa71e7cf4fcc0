"""Sampling: determinism under a fixed key and the support of top-k / top-p."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from elmjax.inference.sampling import Sampler, filtered_logits, sample

LOGITS = jnp.log(jnp.array([[0.30, 0.25, 0.15, 0.12, 0.08, 0.05, 0.03, 0.02]]))


_sample = jax.jit(sample, static_argnums=2)


def draw(sampler, n=3000, key=0):
    """n independent draws from LOGITS (one batch row per draw)."""
    batch = jnp.broadcast_to(LOGITS, (n, LOGITS.shape[1]))
    return np.asarray(_sample(batch, jax.random.key(key), sampler))


def test_greedy_is_argmax():
    assert int(sample(LOGITS, jax.random.key(0), Sampler())[0]) == 0


def test_fixed_key_is_deterministic():
    s = Sampler(temperature=1.0)
    np.testing.assert_array_equal(draw(s, 200, key=3), draw(s, 200, key=3))
    assert not np.array_equal(draw(s, 200, key=3), draw(s, 200, key=4))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_support(k):
    got = set(draw(Sampler(temperature=1.0, top_k=k)).tolist())
    assert got == set(range(k))


@pytest.mark.parametrize("p, support", [(0.5, 2), (0.6, 3), (0.75, 4), (0.85, 5), (0.93, 6)])
def test_top_p_support(p, support):
    # cumulative: .30 .55 .70 .82 .90 .95 .98 1.0 -> smallest prefix reaching p
    s = Sampler(temperature=1.0, top_p=p)
    assert set(draw(s).tolist()) == set(range(support))
    kept = np.isfinite(np.asarray(filtered_logits(LOGITS, s)[0]))
    assert kept.sum() == support


def test_top_k_then_top_p():
    s = Sampler(temperature=1.0, top_k=4, top_p=0.9)
    # within the top 4 (renormalised: .36 .30 .18 .14) 0.9 needs all four
    assert set(draw(s).tolist()) == {0, 1, 2, 3}


def test_frequencies_follow_the_tempered_distribution():
    counts = np.bincount(draw(Sampler(temperature=0.5), n=4000), minlength=8) / 4000
    want = np.asarray(jax.nn.softmax(LOGITS[0] / 0.5))
    np.testing.assert_allclose(counts, want, atol=0.03)


def test_bad_settings_are_rejected():
    for kw in (dict(temperature=-1.0), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            Sampler(**kw)
