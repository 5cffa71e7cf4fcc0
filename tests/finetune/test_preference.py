"""Preference losses against their formulas, sequence log-probabilities against a separate
forward, and the precomputed reference against the initial model scored pair by pair."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from elmjax.config import prefs_config
from elmjax.data import prefs
from elmjax.model.openelm import forward, init_params
from elmjax.train import preference
from tests.finetune.conftest import ROOT
from tests.train.conftest import tiny_run_config

TRAIN = str(ROOT / "data_mixtures" / "samples" / "prefs" / "train.jsonl")

# Hand-picked sequence log-probabilities of two pairs: (policy chosen, policy rejected,
# reference chosen, reference rejected).
PAIRS = np.array([[-3.0, -5.0, -4.0, -4.5], [-7.0, -2.0, -6.0, -2.5]])


def softplus(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("loss,beta,eps", [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.2),
                                           ("hinge", 0.1, 0.0), ("hinge", 2.0, 0.0),
                                           ("ipo", 0.1, 0.0)])
def test_losses_equal_their_formulas(loss, beta, eps):
    out = preference.pair_losses(*PAIRS.T, loss=loss, beta=beta, label_smoothing=eps)
    for k, (pc, pr, rc, rr) in enumerate(PAIRS):
        h = (pc - rc) - (pr - rr)  # 1.5 for the first pair, -1.5 for the second
        want = {"sigmoid": (1 - eps) * softplus(-beta * h) + eps * softplus(beta * h),
                "hinge": max(0.0, 1.0 - beta * h),
                "ipo": (h - 1.0 / (2.0 * beta)) ** 2}[loss]
        np.testing.assert_allclose(out["loss"][k], want, rtol=1e-6)
        np.testing.assert_allclose(out["reward_chosen"][k], beta * (pc - rc), rtol=1e-6)
        np.testing.assert_allclose(out["reward_rejected"][k], beta * (pr - rr), rtol=1e-6)
        np.testing.assert_allclose(out["reward_margin"][k], beta * h, rtol=1e-6)
        assert out["reward_accuracy"][k] == float(h > 0)
        np.testing.assert_allclose(out["kl"][k], ((pc - rc) + (pr - rr)) / 2, rtol=1e-6)
        assert (out["logp_chosen"][k], out["logp_rejected"][k]) == (pc, pr)


def test_dpo_gradient_is_the_papers():
    """d loss / d log pi(chosen) = -beta * sigmoid(-beta h) (Rafailov et al. 2023, sec. 4),
    with label smoothing e: -(1 - e) beta sigmoid(-beta h) + e beta sigmoid(beta h)."""
    beta, eps = 0.3, 0.1
    pc, pr, rc, rr = PAIRS[0]
    grad = jax.grad(lambda x: preference.pair_losses(x[0], x[1], rc, rr, beta=beta,
                                                     label_smoothing=eps)["loss"])(jnp.array([pc, pr]))
    h = (pc - rc) - (pr - rr)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = -(1 - eps) * beta * sig(-beta * h) + eps * beta * sig(beta * h)
    np.testing.assert_allclose(np.asarray(grad), [want, -want], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_prefs():
    """A tiny model config with a ``prefs`` section over the shipped pairs, its initial
    parameters and one batch of 4 pairs."""
    cfg = tiny_run_config()
    cfg.data.seq_len = 32
    cfg.prefs = prefs_config(files=TRAIN, max_prompt_length=16)
    params = init_params(cfg, jax.random.key(0))
    batch = next(prefs.make_pair_iterator(cfg, process_index=0, process_count=1))
    return cfg, params, batch


_JITTED = {}


def _logits_fn(cfg):
    """``forward`` jitted once per config object."""
    if id(cfg) not in _JITTED:
        _JITTED[id(cfg)] = jax.jit(lambda p, x: forward(cfg, p, x))
    return _JITTED[id(cfg)]


def direct_logp(cfg, params, batch, row):
    """Log-probability of one row's trained targets from a plain forward of that row alone
    (no segment ids or positions: the causal model cannot see the padding after the row)."""
    n = int(batch["segment_ids"][row].sum())
    logits = _logits_fn(cfg)(params, batch["inputs"][row:row + 1])[0, :n]
    logp = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
    picked = np.take_along_axis(np.asarray(logp), batch["targets"][row, :n, None], axis=-1)[:, 0]
    return float(np.sum(picked * batch["loss_mask"][row, :n]))


def test_sequence_logps_equal_a_separate_forward(tiny_prefs):
    cfg, params, batch = tiny_prefs
    logps = np.asarray(jax.jit(lambda p, b: preference.sequence_logps(cfg, p, b))(params, batch))
    want = [direct_logp(cfg, params, batch, r) for r in range(len(logps))]
    np.testing.assert_allclose(logps, want, rtol=1e-5)


def test_before_any_update_the_dpo_loss_is_log_2_and_margins_are_zero(tiny_prefs):
    cfg, params, batch = tiny_prefs
    copy = jax.tree.map(jnp.array, params)  # the frozen reference: the same weights
    loss_sum, sums = jax.jit(lambda p, r, b: preference.preference_sums(cfg, p, r, b))(params, copy, batch)
    n = float(sums["count"])
    assert n == 4
    np.testing.assert_allclose(float(loss_sum) / n, math.log(2), rtol=1e-7)
    for key in ("reward_margin", "reward_chosen", "reward_rejected", "kl", "reward_accuracy"):
        assert float(sums[key]) == 0.0, key
    assert float(sums["logp_chosen"]) < 0 and float(sums["logp_rejected"]) < 0


def test_precomputed_reference_equals_the_initial_model_pair_by_pair(tiny_prefs, tmp_path):
    cfg, params, batch = tiny_prefs
    cfg = cfg.copy_and_resolve_references()
    cfg.finetune = {"init": "a-test-init"}
    table = preference.stored_reference(cfg, tmp_path, params)
    records = prefs.sft.load_records(cfg.prefs.files)
    assert table.shape == (len(records), 2) and np.isfinite(table).all()
    tok = prefs.open_tokenizer(cfg)
    for i in (0, 17, len(records) - 1):  # a record scored alone, outside any batch
        pairs, _ = prefs.encode_pairs(tok, [prefs.sft.parse_record(records[i])], cfg.prefs,
                                      cfg.data.seq_len + 1)
        rows = prefs.pair_rows(pairs, cfg.data.seq_len, tok.pad_id)
        want = [direct_logp(cfg, params, rows, r) for r in (0, 1)]
        np.testing.assert_allclose(table[i], want, rtol=1e-5)
    # a resumed run reads the stored table back; other settings are refused
    np.testing.assert_array_equal(preference.stored_reference(cfg, tmp_path, None), table)
    cfg.prefs.max_prompt_length = 8
    with pytest.raises(ValueError, match="delete it"):
        preference.stored_reference(cfg, tmp_path, params)
    # the batches carry each pair's two entries, rows interleaved like the pairs
    cfg.prefs.max_prompt_length = 16
    it = prefs.make_pair_iterator(cfg, table, process_index=0, process_count=1)
    got = next(it)
    assert got["ref_logp"].shape == (8, 1)
    loss_sum, sums = jax.jit(lambda p, b: preference.preference_sums(cfg, p, None, b))(params, got)
    np.testing.assert_allclose(got["ref_logp"][:2, 0], [direct_logp(cfg, params, got, r) for r in (0, 1)],
                               rtol=1e-5)
    assert abs(float(sums["reward_margin"])) < 1e-5
    # with the precomputed reference the loss before any update is log 2 too
    np.testing.assert_allclose(float(loss_sum) / float(sums["count"]), math.log(2), rtol=1e-5)


@pytest.mark.slow
def test_microbatches_keep_pairs_together(tiny_prefs):
    """Two microbatches of interleaved rows give the step of one batch: pairs are not split."""
    import optax

    from elmjax.train.step import make_train_step

    cfg, params, batch = tiny_prefs
    cfg = cfg.copy_and_resolve_references()
    policy = jax.tree.map(lambda x: x * 1.05, params)  # margins away from 0
    state = {"step": jnp.zeros((), jnp.int32), "params": {"policy": policy, "reference": params},
             "opt_state": optax.sgd(0.1).init({"policy": policy, "reference": params})}
    objective = preference.preference_objective(cfg)
    metrics = []
    for k in (1, 2):
        cfg.train.microbatches = k
        _, m = jax.jit(make_train_step(cfg, optax.sgd(0.1), objective=objective))(state, batch)
        metrics.append(m)
    assert abs(float(metrics[0]["reward_margin"])) > 1e-3
    for key in ("loss", "grad_norm", "reward_margin", "logp_chosen", "count"):
        np.testing.assert_allclose(float(metrics[1][key]), float(metrics[0][key]), rtol=1e-5, err_msg=key)
