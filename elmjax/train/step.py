"""Loss, train step and eval step: pure functions of (state, batch), jitted by the trainer.

A batch is a dict of ``[batch, length]`` arrays: ``inputs``, ``targets``, ``segment_ids``,
``positions`` (int32) and ``loss_mask`` (float32). The train state is a dict
``{"step", "params", "opt_state"}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from elmjax.model.openelm import forward


def token_losses(cfg, params, batch, z_loss: float = 0.0):
    """Per-token cross-entropy (+ z-loss) in float32 ``[batch, length]``, and the logsumexp."""
    logits = forward(cfg, params, batch["inputs"], batch["segment_ids"], batch["positions"])
    logz = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
    ce = logz - target_logit
    return ce + z_loss * jnp.square(logz), ce


def lm_objective(cfg):
    """The pretraining / instruction-tuning objective: ``objective(params, batch) -> (loss_sum,
    sums)`` with the masked sum of cross-entropy + ``train.z_loss`` · logsumexp², and
    ``sums = {"ce_loss": masked cross-entropy sum, "count": masked token count}``."""
    z_loss = float(cfg.train.get("z_loss", 0.0))

    def objective(params, batch):
        loss, ce = token_losses(cfg, params, batch, z_loss)
        mask = batch["loss_mask"].astype(jnp.float32)
        return jnp.sum(loss * mask), {"ce_loss": jnp.sum(ce * mask), "count": jnp.sum(mask)}

    return objective


def make_train_step(cfg, tx: optax.GradientTransformation, param_transform=None, objective=None):
    """Returns ``train_step(state, batch) -> (state, metrics)``.

    ``objective(params, batch) -> (loss_sum, sums)`` is the differentiated loss (default
    :func:`lm_objective`): a sum over the batch's examples or tokens, and a dict of float32
    scalar sums that holds ``"count"``, the normaliser (tokens, pairs, ...). The update uses
    the gradient of ``loss_sum / count``; ``metrics`` has ``loss`` (= loss_sum / count),
    ``grad_norm``, ``skipped``, ``count`` and every other ``sums[k] / count``.

    ``param_transform(params, step) -> model params``, when given, maps the state's
    parameters to the tree the objective takes, inside the differentiated loss (PEFT: the
    state holds ``{"base", "adapters"}`` and the loss sees ``peft.apply``'s result).

    The batch is split into ``train.microbatches`` slices whose gradients are summed before
    one update, so k microbatches equal one batch of k times the size. A non-finite loss or
    gradient leaves the state unchanged (except the step counter) and sets ``skipped``.
    """
    k = int(cfg.train.microbatches)
    objective = lm_objective(cfg) if objective is None else objective

    def summed_loss(params, batch, step):
        if param_transform is not None:
            params = param_transform(params, step)
        return objective(params, batch)

    grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

    def train_step(state, batch):
        params = state["params"]
        if k == 1:
            (loss_sum, sums), grads = grad_fn(params, batch, state["step"])
        else:
            micro = jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), batch)

            def body(carry, mb):
                (l, s), g = grad_fn(params, mb, state["step"])
                acc_g, acc_l, acc_s = carry
                return (jax.tree.map(jnp.add, acc_g, g), acc_l + l,
                        jax.tree.map(jnp.add, acc_s, s)), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            sums_shape = jax.eval_shape(summed_loss, params, jax.tree.map(lambda x: x[0], micro),
                                        state["step"])[1]
            zero_sums = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), sums_shape)
            (grads, loss_sum, sums), _ = jax.lax.scan(
                body, (zeros, jnp.zeros((), jnp.float32), zero_sums), micro)
        count = jnp.maximum(sums["count"], 1.0)
        grads = jax.tree.map(lambda g: g / count, grads)
        loss = loss_sum / count
        grad_norm = optax.tree.norm(grads)
        updates, new_opt = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = {"step": state["step"] + 1,
                     "params": keep(new_params, params),
                     "opt_state": keep(new_opt, state["opt_state"])}
        metrics = {"loss": loss, "grad_norm": grad_norm, "count": sums["count"],
                   "skipped": (~finite).astype(jnp.int32),
                   **{name: v / count for name, v in sums.items() if name != "count"}}
        return new_state, metrics

    return train_step


def make_eval_step(cfg):
    """Returns ``eval_step(params, batch) -> {"ce_sum", "tokens"}`` (sums, for exact means)."""

    def eval_step(params, batch):
        _, ce = token_losses(cfg, params, batch)
        mask = batch["loss_mask"].astype(jnp.float32)
        return {"ce_sum": jnp.sum(ce * mask), "tokens": jnp.sum(mask)}

    return eval_step


def jit_train_step(cfg, tx: optax.GradientTransformation, shardings, batch_sharding,
                   param_transform=None, objective=None):
    """``make_train_step`` jitted with the state's and the batch's shardings, the state donated
    (the one place the train step is jitted: the loop, planning, benchmarks and tests)."""
    return jax.jit(make_train_step(cfg, tx, param_transform, objective),
                   in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
                   donate_argnums=0)
