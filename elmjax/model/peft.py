"""LoRA and DoRA as pure parameter transforms: ``init_adapters``, ``apply``, ``merge``.

The model never sees an adapter. A fine-tuning run's parameters are
``{"base": <the model's tree>, "adapters": <one dict per target matrix>}`` and the
loss calls :func:`apply`, which returns an ordinary parameter tree whose target
matrices are the adapted ones. Only the adapters are trained (the optimizer's
trainable mask); the base is held frozen, optionally in bfloat16 (``peft.base_dtype``).

Every target is a matrix ``W`` of shape ``[in, out]`` — a Linear kernel as elmjax stores
it, or the token embedding ``[vocab, model_dim]`` read as a linear map from one-hot
tokens (``in = vocab``). With scale ``s = alpha / rank``:

- **LoRA** (Hu et al. 2021): ``W' = W + s * A @ B`` with ``A [in, r]`` random and
  ``B [r, out]`` zero, so a fresh adapter is the identity.
- **DoRA** (Liu et al. 2024, eq. 5): ``W' = m * (W + s * A @ B) / ||W + s * A @ B||_c``
  with the magnitude ``m [out]`` initialised to ``||W||_c``. ``||.||_c`` is the norm of
  each column of our ``[in, out]`` layout, i.e. over the **input axis (axis 0)**, one value
  per output feature — the paper's column norm for ``y = x W`` and the same quantity the
  reference implementations compute over ``dim=1`` of PyTorch's ``[out, in]`` weight. As
  the paper recommends (section 4.3), the norm is treated as a constant in the backward
  pass (``stop_gradient``); the forward value is exact.

Two consequences of working on weights rather than activations, stated plainly:

- **Dropout.** The paper's adapter dropout drops entries of the adapter's *input*
  ``x`` independently per token. A weight transform cannot do that. Here dropout drops
  *rows of A* (input features of the adapter path, scaled by ``1 / (1 - p)``), with one
  mask per target matrix per training step, shared by every token of the step's batch.
  The expected update is the same; the noise is coarser (per step, not per token).
  With ``train=False`` (evaluation, merging) no dropout is applied.
- **Tied embedding.** OpenELM's output head is the token embedding, so an adapter on
  ``token_embeddings`` changes the head too. This is what makes merging exact.

With ``model.dtype=bfloat16`` the model rounds every weight to bfloat16 before its
matmul, adapted ones included, so very small adapter updates are rounded away in the
forward pass as they would be after merging; use float32 compute when that matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from elmjax.config import PEFT_TARGETS as TARGETS
from elmjax.model.schedule import layer_schedule

# Where each target lives inside one layer (token_embeddings is at the top level).
_LAYER_PATHS = {"qkv_proj": ("attn", "qkv_proj", "kernel"), "out_proj": ("attn", "out_proj", "kernel"),
                "proj_1": ("ffn", "proj_1", "kernel"), "proj_2": ("ffn", "proj_2", "kernel")}


def enabled(cfg) -> bool:
    """True when the run config trains adapters (``peft.method`` is lora or dora)."""
    return "peft" in cfg and cfg.peft.method != "none"


def adapters_only(cfg) -> bool:
    """True when checkpoints hold the adapters but not the frozen base (``checkpoint.adapters_only``)."""
    return enabled(cfg) and "checkpoint" in cfg and bool(cfg.checkpoint.get("adapters_only", False))


def targets_of(cfg) -> tuple[str, ...]:
    """The configured target names, in :data:`TARGETS` order."""
    names = {t.strip() for t in cfg.peft.targets.split(",") if t.strip()}
    return tuple(t for t in TARGETS if t in names)


def target_shapes(cfg) -> dict[tuple[str, ...], tuple[int, int]]:
    """Path in the model's parameter tree -> ``(in, out)`` of every target matrix."""
    m = cfg.model
    names, d, hd = targets_of(cfg), m.model_dim, m.head_dim
    out = {}
    if "token_embeddings" in names:
        out[("token_embeddings",)] = (m.vocab_size, d)
    for i, s in enumerate(layer_schedule(m)):
        shapes = {"qkv_proj": (d, (s.num_query_heads + 2 * s.num_kv_heads) * hd),
                  "out_proj": (s.num_query_heads * hd, d),
                  "proj_1": (d, 2 * s.ffn_dim), "proj_2": (s.ffn_dim, d)}
        for name in names:
            if name in _LAYER_PATHS:
                out[(f"layers_{i}",) + _LAYER_PATHS[name]] = shapes[name]
    return out


def trainable_count(cfg) -> int:
    """Adapter parameters: ``r * (in + out)`` per target, plus ``out`` magnitudes for DoRA."""
    r, dora = cfg.peft.rank, cfg.peft.method == "dora"
    return sum(r * (i + o) + (o if dora else 0) for i, o in target_shapes(cfg).values())


# --------------------------------------------------------------------------- trees


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _adapter_path(path):
    """Adapter location for a target: the kernel's module path (``kernel`` dropped)."""
    return path[:-1] if path[-1] == "kernel" else path


def init_adapters(cfg, params, rng: jax.Array) -> dict:
    """Fresh adapters for ``params`` (the model's tree; only target shapes/values are read).

    Per target ``[in, out]``: ``lora_a [in, r]`` ~ N(0, 1/in) (N(0, 1) for the token
    embedding, whose inputs are one-hot), ``lora_b [r, out]`` = 0 and, for DoRA,
    ``magnitude [out]`` = the column norms of the base weight (over axis 0). All float32.
    A fresh adapter leaves :func:`apply`'s output equal to the base.
    """
    r, out = cfg.peft.rank, {}
    for k, (path, (n_in, n_out)) in enumerate(sorted(target_shapes(cfg).items())):
        std = 1.0 if path == ("token_embeddings",) else n_in ** -0.5
        ad = {"lora_a": std * jax.random.normal(jax.random.fold_in(rng, k), (n_in, r), jnp.float32),
              "lora_b": jnp.zeros((r, n_out), jnp.float32)}
        if cfg.peft.method == "dora":
            ad["magnitude"] = jnp.linalg.norm(_get(params, path).astype(jnp.float32), axis=0)
        _set(out, _adapter_path(path), ad)
    return out


def _adapted(w, ad, scale: float, dora: bool, keep_rows=None):
    """The effective float32 matrix ``[in, out]`` of one target."""
    a = ad["lora_a"] if keep_rows is None else ad["lora_a"] * keep_rows[:, None]
    v = w.astype(jnp.float32) + scale * jnp.matmul(a, ad["lora_b"], precision=jax.lax.Precision.HIGHEST)
    if not dora:
        return v
    norm = jax.lax.stop_gradient(jnp.linalg.norm(v, axis=0))  # [out]; constant in backward (paper 4.3)
    return v * (ad["magnitude"] / norm)[None, :]


def apply(cfg, base_params, adapters, rng: jax.Array | None = None, train: bool = False) -> dict:
    """The effective parameter tree: base with each target replaced by its adapted matrix.

    ``base_params``: the model's tree (any float dtype; held constant with
    ``stop_gradient``, so no gradient is computed for it); ``adapters``: from
    :func:`init_adapters`. Target leaves come back float32 ``[in, out]``; the other leaves
    keep the base's dtype. With ``train=True`` and ``peft.dropout > 0``, ``rng`` draws the
    adapter dropout masks (rows of A, see the module docstring).
    """
    scale = cfg.peft.alpha / cfg.peft.rank
    dora, p = cfg.peft.method == "dora", float(cfg.peft.dropout)
    out = jax.tree.map(jax.lax.stop_gradient, base_params)
    for k, (path, (n_in, _)) in enumerate(sorted(target_shapes(cfg).items())):
        keep = None
        if train and p > 0:
            if rng is None:
                raise ValueError("peft.apply(train=True) with peft.dropout > 0 needs an rng")
            keep = jax.random.bernoulli(jax.random.fold_in(rng, k), 1.0 - p, (n_in,)) / (1.0 - p)
        _set(out, path, _adapted(_get(out, path), _get(adapters, _adapter_path(path)), scale, dora, keep))
    return out


def merge(cfg, base_params, adapters) -> dict:
    """Folds adapters into plain float32 weights (numpy), ready for ``save_hf`` or ``forward``."""
    merged = jax.jit(lambda b, a: apply(cfg, b, a))(base_params, adapters)
    return jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), merged)


# --------------------------------------------------------------------------- train state


def wrap(cfg, base_params, rng: jax.Array) -> dict:
    """Train-state parameters ``{"base": base in peft.base_dtype, "adapters": fresh adapters}``."""
    base = jax.tree.map(lambda x: jnp.asarray(x, jnp.dtype(cfg.peft.base_dtype)), base_params)
    return {"base": base, "adapters": init_adapters(cfg, base, rng)}


def logical_axes(cfg, model_axes: dict) -> dict:
    """Logical ``PartitionSpec`` tree of :func:`wrap`'s output, from the model's own tree.

    ``lora_a`` shards like the target's input axis, ``lora_b`` and ``magnitude`` like its
    output axis; the rank axis is replicated.
    """
    adapters: dict = {}
    for path in target_shapes(cfg):
        names = tuple(_get(model_axes, path))
        ad = {"lora_a": P(names[0], None), "lora_b": P(None, names[1])}
        if cfg.peft.method == "dora":
            ad["magnitude"] = P(names[1])
        _set(adapters, _adapter_path(path), ad)
    return {"base": model_axes, "adapters": adapters}


def trainable_mask(params) -> dict:
    """Tree of bools over :func:`wrap`'s structure: True for adapters, False for the base."""
    return {"base": jax.tree.map(lambda _: False, params["base"]),
            "adapters": jax.tree.map(lambda _: True, params["adapters"])}


def train_transform(cfg):
    """``transform(params, step) -> model params`` for ``make_train_step``'s ``param_transform``.

    Applies the adapters in training mode; the dropout masks depend on ``train.seed`` and
    the step only, so a resumed run draws the same masks.
    """
    key = jax.random.fold_in(jax.random.key(cfg.train.seed), 0x9EF7)

    def transform(params, step):
        return apply(cfg, params["base"], params["adapters"], jax.random.fold_in(key, step), train=True)

    return transform
