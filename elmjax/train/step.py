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


def _summed_loss(params, cfg, batch, z_loss, param_transform=None, step=None):
    """(sum of masked losses, (sum of masked cross-entropy, token count))."""
    if param_transform is not None:
        params = param_transform(params, step)
    loss, ce = token_losses(cfg, params, batch, z_loss)
    mask = batch["loss_mask"].astype(jnp.float32)
    return jnp.sum(loss * mask), (jnp.sum(ce * mask), jnp.sum(mask))


def make_train_step(cfg, tx: optax.GradientTransformation, param_transform=None):
    """Returns ``train_step(state, batch) -> (state, metrics)``.

    ``param_transform(params, step) -> model params``, when given, maps the state's
    parameters to the tree the model takes, inside the differentiated loss (PEFT: the
    state holds ``{"base", "adapters"}`` and the loss sees ``peft.apply``'s result).

    The batch is split into ``train.microbatches`` slices whose gradients are summed before
    one update, so k microbatches equal one batch of k times the size. A non-finite loss or
    gradient leaves the state unchanged (except the step counter) and sets ``skipped``.
    """
    k = int(cfg.train.microbatches)
    z_loss = float(cfg.train.get("z_loss", 0.0))
    grad_fn = jax.value_and_grad(_summed_loss, has_aux=True)

    def train_step(state, batch):
        params = state["params"]
        if k == 1:
            (loss_sum, (ce_sum, count)), grads = grad_fn(params, cfg, batch, z_loss,
                                                         param_transform, state["step"])
        else:
            micro = jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), batch)

            def body(carry, mb):
                (l, (c, n)), g = grad_fn(params, cfg, mb, z_loss, param_transform, state["step"])
                acc_g, acc_l, acc_c, acc_n = carry
                return (jax.tree.map(jnp.add, acc_g, g), acc_l + l, acc_c + c, acc_n + n), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            (grads, loss_sum, ce_sum, count), _ = jax.lax.scan(
                body, (zeros, 0.0, 0.0, 0.0), micro)
        count = jnp.maximum(count, 1.0)
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
        metrics = {"loss": loss, "ce_loss": ce_sum / count, "grad_norm": grad_norm,
                   "tokens": count, "skipped": (~finite).astype(jnp.int32)}
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
                   param_transform=None):
    """``make_train_step`` jitted with the state's and the batch's shardings, the state donated."""
    return jax.jit(make_train_step(cfg, tx, param_transform),
                   in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
                   donate_argnums=0)
