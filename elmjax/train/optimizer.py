"""The optax chain: AdamW with Apple's recipe, schedules, clipping, decay and trainable masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from elmjax.data.curriculum import curriculum_phases


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


def with_phase_segments(base: optax.Schedule, phases, floor: float) -> optax.Schedule:
    """Overrides ``base`` inside curriculum phases whose ``lr_schedule`` is not ``continue``.

    Within such a phase ``[start, end)`` the rate starts from ``base(start)`` (so the curve
    stays continuous at the boundary) and is ``constant``, or decays to ``floor`` at ``end``
    linearly (``linear_decay``) or along a half cosine (``cosine_decay``).
    """
    segments = [p for p in phases if p.lr_schedule != "continue"]
    if not segments:
        return base

    def schedule(step):
        lr = base(step)
        for p in segments:
            v0 = base(p.start)
            t = jnp.clip((step - p.start) / max(p.end - p.start, 1), 0.0, 1.0)
            if p.lr_schedule == "constant":
                value = v0
            elif p.lr_schedule == "linear_decay":
                value = v0 + (floor - v0) * t
            else:
                value = floor + (v0 - floor) * 0.5 * (1 + jnp.cos(jnp.pi * t))
            inside = (step >= p.start) & ((step < p.end) | (p.end == phases[-1].end))
            lr = jnp.where(inside, value, lr)
        return lr

    return schedule


def run_schedule(cfg) -> optax.Schedule:
    """The run's learning rate by step: ``learning_rate_schedule`` plus curriculum segments."""
    o = cfg.optim
    return with_phase_segments(learning_rate_schedule(o, cfg.train.steps), curriculum_phases(cfg),
                               o.peak_lr * o.min_lr_ratio)


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
        optax.adamw(run_schedule(cfg), b1=o.b1, b2=o.b2, eps=o.eps,
                    weight_decay=o.weight_decay, mask=decay_mask),
    )
    if trainable is None:
        return tx
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
