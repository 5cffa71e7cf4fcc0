"""The optax chain: AdamW with Apple's recipe, schedules, clipping, decay and trainable masks."""

from __future__ import annotations

import jax
import optax


def learning_rate_schedule(o, total_steps: int) -> optax.Schedule:
    """Linear warm-up from ``optim.init_lr`` to ``optim.peak_lr``, then the decay phase.

    - ``cosine``: cosine decay to ``min_lr_ratio * peak`` at ``optim.decay_steps`` (then flat);
    - ``wsd``: warmup-stable-decay, flat at peak, then linear decay to the floor over the last
      ``wsd_decay_fraction`` of ``total_steps``;
    - ``constant``: flat at peak after warm-up.
    """
    peak, floor, warm = o.peak_lr, o.peak_lr * o.min_lr_ratio, o.warmup_steps
    warmup = optax.linear_schedule(o.init_lr, peak, max(warm, 1))
    if o.schedule == "cosine":
        decay_len = max(int(o.decay_steps) - warm, 1)
        rest = optax.cosine_decay_schedule(peak, decay_len, alpha=o.min_lr_ratio)
        return optax.join_schedules([warmup, rest], [warm])
    if o.schedule == "wsd":
        decay_len = max(int(round(total_steps * o.wsd_decay_fraction)), 1)
        stable_len = max(total_steps - warm - decay_len, 0)
        return optax.join_schedules(
            [warmup, optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay_len)],
            [warm, warm + stable_len])
    return optax.join_schedules([warmup, optax.constant_schedule(peak)], [warm])


def decay_mask(params):
    """True for tensors that get weight decay: every tensor of rank >= 2 (embedding included)."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(cfg, trainable=None) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay) after global-norm clipping.

    ``trainable``: optional tree of bools like the params; parameters marked False get no
    update and no optimizer state (LoRA/DoRA train adapters only).
    """
    o = cfg.optim
    tx = optax.chain(
        optax.clip_by_global_norm(o.clip_norm) if o.clip_norm else optax.identity(),
        optax.adamw(learning_rate_schedule(o, cfg.train.steps), b1=o.b1, b2=o.b2, eps=o.eps,
                    weight_decay=o.weight_decay, mask=decay_mask),
    )
    if trainable is None:
        return tx
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
