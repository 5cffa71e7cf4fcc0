"""Preference losses (DPO, RSO's hinge, IPO) over a frozen reference: pure functions.

For a pair with policy log-probabilities ``pc``, ``pr`` of its chosen and rejected
responses (summed over the response tokens) and the reference model's ``rc``, ``rr``,
the implicit rewards are ``beta * (pc - rc)`` and ``beta * (pr - rr)``; with
``h = (pc - rc) - (pr - rr)`` the losses are

- ``sigmoid`` (DPO, Rafailov et al. 2023, eq. 7; with label smoothing ``e`` the
  conservative DPO of Mitchell 2023): ``-(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)``;
- ``hinge`` (RSO, Liu et al. 2023, eq. 9 — the SLiC-style hinge on the normalised
  likelihood): ``max(0, 1 - beta h)``;
- ``ipo`` (Azar et al. 2023, eq. 17, on sequence log-likelihoods as in the paper):
  ``(h - 1 / (2 beta))^2``.

Logged per pair (means over the step's pairs): ``loss``; ``reward_chosen``,
``reward_rejected``, ``reward_margin`` (chosen minus rejected) and ``reward_accuracy``
(the fraction of pairs whose chosen reward is the larger); ``logp_chosen``,
``logp_rejected`` (policy); and ``kl``: the mean of ``log pi(y|x) - log pi_ref(y|x)`` over
both responses — the single-sample (k1) estimate of KL(pi || pi_ref) that RLHF trainers log.
The responses come from the data rather than from the policy, so it measures how far the
policy has moved on them, not the exact divergence.

The reference is the frozen starting model: a second forward in the same step (a copy of
the weights in the train state, or under LoRA/DoRA the base with the adapters off), or
its log-probabilities scored once before training (:func:`precompute_reference`) and
carried in the batch as ``ref_logp``. Both ways give the same numbers.
:func:`heldout_evaluator` scores held-out pairs (``prefs.eval_files``) during training.

This module is the objective only: the run is ``elmjax finetune`` with a ``prefs`` section
(``elmjax.train.finetune.preference_run``) on the ordinary loop (``elmjax.train.loop`` with
``objective=``), rather than an ``elmjax align`` of its own, because everything else —
loading ``--init``, LoRA/DoRA, resuming, checkpoints, export — is fine-tuning's. The train
state's layout for the reference is owned by ``elmjax.train.state``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from elmjax.data.prefs import LOSSES
from elmjax.train.step import token_losses

METRICS = ("loss", "reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy",
           "logp_chosen", "logp_rejected", "kl")


def pair_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, loss: str = "sigmoid",
                beta: float = 0.1, label_smoothing: float = 0.0) -> dict:
    """Per-pair loss and statistics (see the module docstring) from sequence log-probabilities.

    All four inputs are float ``[P]``; returns float32 ``[P]`` arrays keyed by :data:`METRICS`.
    """
    pc, pr, rc, rr = (jnp.asarray(x, jnp.float32) for x in (policy_chosen, policy_rejected,
                                                            ref_chosen, ref_rejected))
    chosen_ratio, rejected_ratio = pc - rc, pr - rr
    h = chosen_ratio - rejected_ratio
    if loss == "sigmoid":
        losses = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * h)
                  - label_smoothing * jax.nn.log_sigmoid(-beta * h))
    elif loss == "hinge":
        losses = jax.nn.relu(1.0 - beta * h)
    elif loss == "ipo":
        losses = jnp.square(h - 1.0 / (2.0 * beta))
    else:
        raise ValueError(f"unknown preference loss {loss!r} (one of {LOSSES})")
    reward_c, reward_r = beta * jax.lax.stop_gradient(chosen_ratio), beta * jax.lax.stop_gradient(rejected_ratio)
    return {"loss": losses, "reward_chosen": reward_c, "reward_rejected": reward_r,
            "reward_margin": reward_c - reward_r,
            "reward_accuracy": (reward_c > reward_r).astype(jnp.float32),
            "logp_chosen": jax.lax.stop_gradient(pc), "logp_rejected": jax.lax.stop_gradient(pr),
            "kl": jax.lax.stop_gradient(0.5 * (chosen_ratio + rejected_ratio))}


def sequence_logps(cfg, params, batch) -> jax.Array:
    """float32 ``[rows]``: each row's log-probability of its trained (response) tokens.

    ``params``: the model's tree; ``batch``: the pretraining batch keys ``[rows, L]``.
    """
    _, ce = token_losses(cfg, params, batch)
    return -jnp.sum(ce * batch["loss_mask"].astype(jnp.float32), axis=1)


def preference_sums(cfg, policy_params, reference_params, batch) -> tuple[jax.Array, dict]:
    """``(loss sum, sums)`` of a batch of interleaved pairs (``elmjax.data.prefs``).

    ``policy_params``: the model tree being trained; ``reference_params``: the frozen
    reference's tree (held constant with ``stop_gradient``), or None when the batch carries
    the precomputed ``ref_logp`` ``[rows, 1]``. ``sums`` holds the sum over pairs of each of
    :data:`METRICS` and ``count`` (the number of pairs), so ``sums[k] / count`` are means.
    """
    logps = sequence_logps(cfg, policy_params, batch)
    if reference_params is None:
        ref = batch["ref_logp"][:, 0].astype(jnp.float32)
    else:
        ref = sequence_logps(cfg, jax.tree.map(jax.lax.stop_gradient, reference_params), batch)
    p = cfg.prefs
    per_pair = pair_losses(logps[0::2], logps[1::2], ref[0::2], ref[1::2], loss=p.loss,
                           beta=float(p.beta), label_smoothing=float(p.label_smoothing))
    sums = {k: jnp.sum(v) for k, v in per_pair.items()}
    sums["count"] = jnp.asarray(logps.shape[0] // 2, jnp.float32)
    return sums["loss"], sums


# --------------------------------------------------------------------------- precomputed reference


def _scorer(cfg, mesh):
    """``score(params, batch) -> float32 [rows]`` (jitted :func:`sequence_logps`) and a
    function placing a host batch on ``mesh`` (every host holds the whole batch)."""
    from elmjax import parallel

    sharding = None if mesh is None else parallel.batch_sharding(mesh, cfg)

    def place(batch):
        if sharding is None:
            return batch
        return {k: jax.make_array_from_callback(v.shape, sharding, lambda i, v=v: v[i])
                for k, v in batch.items()}

    return jax.jit(lambda p, b: sequence_logps(cfg, p, b)), place


def precompute_reference(cfg, params, mesh=None) -> np.ndarray:
    """The reference log-probabilities of every record of ``prefs.files``: float32 ``[N, 2]``
    (chosen, rejected; NaN for records that are skipped), scored with ``params`` (the model's
    tree) in batches of ``train.global_batch_size`` rows, sharded over ``mesh`` when given.
    Every host computes the whole table (the records are read in file order on each)."""
    from elmjax.data import prefs

    pairs = cfg.train.global_batch_size // 2
    n = len(prefs.sft.load_records(cfg.prefs.files))
    out = np.full((n, 2), np.nan, np.float32)
    score, place = _scorer(cfg, mesh)
    for index, batch in prefs.batches_in_file_order(cfg, pairs):
        logps = np.asarray(jax.device_get(score(params, place(batch)))).reshape(pairs, 2)
        out[index] = logps[:len(index)]
    return out


REFERENCE_FILE = "reference_logps.npz"
# The settings the stored table depends on (besides the starting weights, ``finetune.init``).
_TABLE_KEYS = ("files", "format", "system", "user", "assistant", "add_bos", "max_prompt_length",
               "truncation")


def _table_signature(cfg) -> str:
    import json

    return json.dumps({"prefs": {k: cfg.prefs[k] for k in _TABLE_KEYS}, "seq_len": cfg.data.seq_len,
                       "tokenizer": cfg.data.tokenizer, "dtype": cfg.model.dtype,
                       "init": cfg.get("finetune", {}).get("init")}, sort_keys=True)


def stored_reference(cfg, workdir, params, mesh=None) -> np.ndarray:
    """The reference table of :func:`precompute_reference`, kept in ``workdir`` as
    :data:`REFERENCE_FILE`: scored once and saved (by process 0) on the first call, read
    back on later ones (a resumed run). A table made for other data or settings is refused."""
    from etils import epath

    path = epath.Path(workdir) / REFERENCE_FILE
    signature = _table_signature(cfg)
    if path.exists():
        with path.open("rb") as f:
            stored = np.load(f)
            if str(stored["signature"]) != signature:
                raise ValueError(f"{path} was scored for other data or settings ({stored['signature']}); "
                                 f"delete it to score the reference again")
            return np.asarray(stored["logps"])
    table = precompute_reference(cfg, params, mesh)
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / (REFERENCE_FILE + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, logps=table, signature=np.asarray(signature))
        tmp.rename(path)
    return table


def preference_objective(cfg):
    """The loop's objective for preference training: ``objective(params, batch) -> (loss_sum,
    sums)`` (:func:`preference_sums`; ``count`` = pairs). ``params`` is what the train state
    gives the objective (``elmjax.train.state``): ``{"policy", "reference"}`` model trees when
    ``prefs.reference=model`` (a frozen copy, or the PEFT base), else the policy's tree, the
    reference coming with the batch."""
    precomputed = cfg.prefs.reference == "precomputed"

    def objective(params, batch):
        if precomputed:
            return preference_sums(cfg, params, None, batch)
        return preference_sums(cfg, params["policy"], params["reference"], batch)

    return objective


def heldout_evaluator(cfg, reference_params, mesh=None):
    """``evaluate(step, model params) -> {heldout_loss, heldout_reward_margin,
    heldout_reward_accuracy}``: the preference loss and reward statistics (means over pairs)
    on the pairs of ``prefs.eval_files``, for the loop's ``evaluator`` (every ``eval.every``
    steps). The reference's log-probabilities of those pairs are scored once, here, with
    ``reference_params`` (the starting weights), so evaluation holds no second model."""
    from elmjax.data import prefs

    eval_cfg = cfg.copy_and_resolve_references()
    eval_cfg.prefs.files = cfg.prefs.eval_files
    pairs = cfg.train.global_batch_size // 2
    score, place = _scorer(cfg, mesh)
    batches = [(len(index), place(batch)) for index, batch in prefs.batches_in_file_order(eval_cfg, pairs)]
    if not batches:
        raise ValueError(f"prefs.eval_files {cfg.prefs.eval_files!r}: no usable pair")
    reference = [np.asarray(jax.device_get(score(reference_params, b))) for _, b in batches]
    p = cfg.prefs

    def evaluate(step, params):
        totals, n = {}, 0
        for (kept, batch), ref in zip(batches, reference):
            logps = np.asarray(jax.device_get(score(params, batch)))
            out = pair_losses(logps[0::2][:kept], logps[1::2][:kept], ref[0::2][:kept],
                              ref[1::2][:kept], loss=p.loss, beta=float(p.beta),
                              label_smoothing=float(p.label_smoothing))
            for key in ("loss", "reward_margin", "reward_accuracy"):
                totals[key] = totals.get(key, 0.0) + float(np.sum(out[key]))
            n += kept
        return {f"heldout_{k}": v / n for k, v in totals.items()}

    return evaluate
