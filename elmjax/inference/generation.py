"""Autoregressive generation: prefill the prompts, then decode one token per step.

Prompts of different lengths are left-padded into one batch; padding slots are
marked invalid in the cache and every real token keeps its own RoPE position
(0 at its prompt's first token), so a batch gives the same tokens as each
prompt alone. The decode step is one pure function, run either inside a
``lax.while_loop`` (one compiled program per batch/prompt/cache size, the
default) or from Python one step at a time when a callback streams tokens.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from elmjax.inference.cache import KVCache, cast_params, extend, init_cache
from elmjax.inference.sampling import Sampler, sample
from elmjax.model.openelm import model_section


class Generation(NamedTuple):
    """Result of ``generate``.

    tokens: int32 ``[batch, max_new_tokens]``; ``pad_id`` after a row has stopped.
    lengths: int32 ``[batch]``, tokens generated per row (a stop token included).
    """

    tokens: np.ndarray
    lengths: np.ndarray

    def to_lists(self) -> list:
        """The generated tokens of each row as a list of ints (a stop token included)."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


class DecodeState(NamedTuple):
    """Loop state of the decode (a pytree).

    cache: the ``KVCache``; last: int32 ``[batch]`` tokens to feed next; position:
    int32 ``[batch]`` their RoPE positions; done: bool ``[batch]``; count: int32
    ``[batch]`` tokens generated so far; out: int32 ``[batch, max_new_tokens]``;
    step: int32 scalar, the next column of ``out``.
    """

    cache: KVCache
    last: jax.Array
    position: jax.Array
    done: jax.Array
    count: jax.Array
    out: jax.Array
    step: jax.Array


class PaddedPrompts(NamedTuple):
    """Left-padded prompt batch: tokens, positions int32 and valid bool ``[batch, length]``;
    lengths int32 ``[batch]``."""

    tokens: np.ndarray
    positions: np.ndarray
    valid: np.ndarray
    lengths: np.ndarray


def pad_prompts(prompt_ids, pad_id: int = 0, multiple: int = 1) -> PaddedPrompts:
    """Left-pads prompts (a ``[batch, length]`` array or a list of token lists).

    The padded length is the longest prompt rounded up to ``multiple`` (fewer
    distinct shapes to compile). Positions count from 0 at each prompt's first token.
    """
    rows = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prompt_ids]
    if not rows:
        raise ValueError("generate: prompt_ids is empty")
    lengths = np.array([len(r) for r in rows], np.int32)
    if lengths.min() == 0:
        raise ValueError(f"generate: prompt {int(lengths.argmin())} is empty; "
                         "start it with at least one token (e.g. BOS)")
    width = -(-int(lengths.max()) // multiple) * multiple
    tokens = np.full((len(rows), width), pad_id, np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        valid[i, width - len(r):] = True
    positions = np.maximum(np.arange(width)[None] - (width - lengths)[:, None], 0).astype(np.int32)
    return PaddedPrompts(tokens, positions, valid, lengths)


def _is_stop(tokens, stop_tokens):
    return jnp.any(tokens[:, None] == stop_tokens[None, :], axis=-1)


@functools.partial(jax.jit, static_argnames=("config", "sampler", "max_new_tokens"))
def prefill(config, sampler: Sampler, params, prompts: PaddedPrompts, budget, stop_tokens, key,
            pad_id, max_new_tokens: int) -> DecodeState:
    """Runs the padded prompts through the model and samples the first new token.

    budget: int32 ``[batch]`` most tokens each row may generate (>= 1); stop_tokens:
    int32 ``[n]``. Returns the ``DecodeState`` with a cache of
    ``prompt_len + max_new_tokens`` slots and ``out[:, 0]`` filled.
    """
    b, p = prompts.tokens.shape
    cache = init_cache(config, b, p + max_new_tokens)
    logits, cache = extend(config, params, cache, prompts.tokens, prompts.positions,
                           prompts.valid)
    first = sample(logits, jax.random.fold_in(key, 0), sampler)
    out = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    done = _is_stop(first, stop_tokens) | (budget <= 1)
    return DecodeState(cache, first, prompts.lengths.astype(jnp.int32), done,
                       jnp.ones((b,), jnp.int32), out, jnp.ones((), jnp.int32))


def decode_step(config, sampler: Sampler, params, state: DecodeState, budget, stop_tokens, key,
                pad_id) -> DecodeState:
    """Feeds ``state.last`` and samples the next token of every row (pure, not jitted).

    Rows already done keep emitting ``pad_id`` and do not count. Shapes as in
    ``DecodeState``; budget int32 ``[batch]``, stop_tokens int32 ``[n]``.
    """
    logits, cache = extend(config, params, state.cache, state.last[:, None],
                           state.position[:, None], ~state.done[:, None])
    new = sample(logits, jax.random.fold_in(key, state.step), sampler)
    new = jnp.where(state.done, pad_id, new)
    count = state.count + (~state.done).astype(jnp.int32)
    done = state.done | _is_stop(new, stop_tokens) | (count >= budget)
    out = jax.lax.dynamic_update_slice(state.out, new[:, None], (0, state.step))
    return DecodeState(cache, new, state.position + 1, done, count, out, state.step + 1)


@functools.partial(jax.jit, static_argnames=("config", "sampler"), donate_argnames=("state",))
def decode_one(config, sampler: Sampler, params, state: DecodeState, budget, stop_tokens, key,
               pad_id) -> DecodeState:
    """``decode_step`` compiled on its own, for streaming (the state's buffers are donated)."""
    return decode_step(config, sampler, params, state, budget, stop_tokens, key, pad_id)


@functools.partial(jax.jit, static_argnames=("config", "sampler"), donate_argnames=("state",))
def decode_loop(config, sampler: Sampler, params, state: DecodeState, budget, stop_tokens, key,
                pad_id) -> DecodeState:
    """``decode_step`` in a ``lax.while_loop`` until every row is done or ``out`` is full."""
    max_new = state.out.shape[1]

    def cond(s):
        return (s.step < max_new) & ~jnp.all(s.done)

    def body(s):
        return decode_step(config, sampler, params, s, budget, stop_tokens, key, pad_id)

    return jax.lax.while_loop(cond, body, state)


def generate(config, params, prompt_ids, max_new_tokens: int, *, key: jax.Array | None = None,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
             stop_tokens: Sequence[int] = (), max_length: int | None = None, pad_id: int = 0,
             pad_multiple: int = 1,
             callback: Callable[[np.ndarray, np.ndarray], None] | None = None) -> Generation:
    """Generates up to ``max_new_tokens`` tokens after each prompt.

    config: a run config or its model section; params: the parameter tree (cast once
    to the compute dtype here); prompt_ids: ``[batch, length]`` ints or a list of
    token lists of different lengths. Greedy when ``temperature == 0``; otherwise
    sampling with ``key`` (a ``jax.random`` key, required) after top-k / top-p
    filtering. A row stops after emitting any of ``stop_tokens`` (kept in the
    output) or when prompt plus generated tokens reach ``max_length`` (default
    ``model.max_context_length``). ``callback(tokens [batch], active [batch])``, if
    given, is called with every new column as it is produced (streaming); rows
    with ``active`` False had already stopped. Returns a ``Generation``.
    """
    m = model_section(config)
    sampler = Sampler(float(temperature), int(top_k), float(top_p))
    if not sampler.greedy and key is None:
        raise ValueError("generate: sampling (temperature > 0) needs an explicit jax.random key")
    if key is None:
        key = jax.random.key(0)
    if max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
    prompts = pad_prompts(prompt_ids, pad_id, pad_multiple)
    max_length = m.max_context_length if max_length is None else int(max_length)
    room = max_length - prompts.lengths
    if room.min() < 1:
        raise ValueError(f"generate: prompt {int(room.argmin())} has "
                         f"{int(prompts.lengths[room.argmin()])} tokens, leaving no room "
                         f"under max_length={max_length}")
    budget = np.minimum(room, max_new_tokens).astype(np.int32)
    max_new = int(budget.max())
    # Padded with -1 (never sampled) to a multiple of 8: fewer shapes to compile.
    stop_list = [int(t) for t in stop_tokens]
    stop = np.full(max(8, -(-len(stop_list) // 8) * 8), -1, np.int32)
    stop[:len(stop_list)] = stop_list
    params = cast_params(m, params)
    pad = jnp.int32(pad_id)
    state = prefill(m, sampler, params, PaddedPrompts(*map(jnp.asarray, prompts)),
                    jnp.asarray(budget), stop, key, pad, max_new)
    if callback is None:
        state = decode_loop(m, sampler, params, state, budget, stop, key, pad)
    else:
        callback(np.asarray(state.last), np.ones(len(budget), bool))
        while int(state.step) < max_new and not bool(jnp.all(state.done)):
            active = ~np.asarray(state.done)
            state = decode_one(m, sampler, params, state, budget, stop, key, pad)
            callback(np.asarray(state.last), active)
    return Generation(np.asarray(state.out), np.asarray(state.count))
