"""Throughput measurements: prefill and generation tokens/s, and where decode time goes.

Measured as the OpenELM paper does: warm-up runs excluded, several repetitions,
the median reported. Prefill is one forward pass over ``batch x prompt_len``
tokens filling the KV cache (and choosing the first token); generation is the
compiled decode loop producing the remaining ``gen_len - 1`` tokens per row.

The decode breakdown (``decode_profile``) runs the decode loop under
``jax.profiler`` and assigns every operation of the compiled program to a model
component (attention, FFN, normalisation, RoPE, LM head, sampling, ...) by the
name scopes in its HLO metadata.

For training benchmarks, ``compiled_train_step`` builds the sharded state and the
jitted step of a run config on random tokens, timing its compilation.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from elmjax.inference import generation as gen_lib
from elmjax.inference import sampling
from elmjax.inference.cache import cast_params
from elmjax.model.openelm import model_section


def random_train_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """A numpy training batch of random tokens: one document per row, every target counted."""
    tok = np.random.default_rng(seed).integers(0, vocab_size, (batch, seq_len + 1)).astype(np.int32)
    return {"inputs": tok[:, :-1], "targets": tok[:, 1:],
            "segment_ids": np.ones((batch, seq_len), np.int32),
            "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
            "loss_mask": np.ones((batch, seq_len), np.float32)}


def compiled_train_step(cfg, seed: int = 0):
    """``(step, state, batch, compile_seconds)`` for ``cfg`` on all local devices.

    ``step(state, batch) -> (state, metrics)`` is compiled ahead of time with the run's
    shardings (state donated); the batch is ``train.global_batch_size x data.seq_len``
    random tokens placed as a global array.
    """
    from elmjax import parallel
    from elmjax.train import optimizer, state
    from elmjax.train.step import jit_train_step

    mesh = parallel.make_mesh(cfg)
    tx = optimizer.make_optimizer(cfg)
    st, shardings = state.init_state(cfg, mesh, tx, jax.random.key(seed))
    bsh = parallel.batch_sharding(mesh, cfg)
    batch = parallel.global_batch(random_train_batch(
        cfg.model.vocab_size, cfg.train.global_batch_size, cfg.data.seq_len, seed), bsh)
    fn = jit_train_step(cfg, tx, shardings, bsh)
    t = time.perf_counter()
    compiled = fn.lower(st, batch).compile()
    return compiled, st, batch, time.perf_counter() - t


def median_time(fn: Callable[[], object], reps: int = 5, warmup: int = 1,
                setup: Callable[[], object] | None = None, reduce=statistics.median) -> float:
    """Median (or ``reduce``) seconds of ``fn(setup())`` (or ``fn()``) over ``reps`` runs.

    ``warmup`` runs (compilation included) come first and are not counted. The
    result of ``fn`` is waited for (``jax.block_until_ready``); ``setup``, if given,
    builds fresh arguments outside the timed region (e.g. a donated state).
    """
    times = []
    for i in range(warmup + reps):
        arg = setup() if setup is not None else None
        if arg is not None:
            jax.block_until_ready(arg)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg) if setup is not None else fn())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return reduce(times)


@dataclasses.dataclass
class InferenceThroughput:
    """Medians of one prefill/generation measurement."""

    batch: int
    prompt_len: int
    gen_len: int
    prefill_s: float
    decode_s: float

    @property
    def prefill_tok_s(self) -> float:
        """Prompt tokens processed per second (all rows)."""
        return self.batch * self.prompt_len / self.prefill_s

    @property
    def gen_tok_s(self) -> float:
        """Generated tokens per second (all rows), decode steps only."""
        return self.batch * (self.gen_len - 1) / self.decode_s

    @property
    def step_ms(self) -> float:
        """Milliseconds per decode step (one token for every row)."""
        return 1e3 * self.decode_s / (self.gen_len - 1)


class _Bench:
    """Prepared inputs for timing prefill and decode of one model shape."""

    def __init__(self, config, params, batch, prompt_len, gen_len, sampler, seed=0):
        if gen_len < 2:
            raise ValueError(f"gen_len must be >= 2 (one prefill token + decode), got {gen_len}")
        self.m = model_section(config)
        self.params = jax.block_until_ready(cast_params(self.m, params))
        self.sampler = sampler
        self.gen_len = gen_len
        tokens = np.random.default_rng(seed).integers(1, self.m.vocab_size, (batch, prompt_len))
        self.prompts = gen_lib.PaddedPrompts(*map(jnp.asarray, gen_lib.pad_prompts(tokens)))
        self.budget = jnp.full((batch,), gen_len, jnp.int32)
        self.stop = jnp.full((8,), -1, jnp.int32)
        self.key = jax.random.key(seed)
        self.pad = jnp.int32(0)

    def prefill(self):
        return gen_lib.prefill(self.m, self.sampler, self.params, self.prompts, self.budget,
                               self.stop, self.key, self.pad, self.gen_len)

    def fresh_loop(self):
        """A newly traced decode loop (so patched model functions take effect)."""
        m, sampler = self.m, self.sampler

        def loop(params, state, budget, stop, key, pad):
            def body(_, s):
                return gen_lib.decode_step(m, sampler, params, s, budget, stop, key, pad)
            return jax.lax.fori_loop(0, self.gen_len - 1, body, state)

        return jax.jit(loop, donate_argnums=1)

    def time_decode(self, reps, warmup, loop=None, reduce=statistics.median) -> float:
        loop = loop or self.fresh_loop()
        return median_time(
            lambda s: loop(self.params, s, self.budget, self.stop, self.key, self.pad),
            reps, warmup, setup=self.prefill, reduce=reduce)


def measure_inference(config, params, batch: int, prompt_len: int, gen_len: int, reps: int = 5,
                      warmup: int = 1, sampler: sampling.Sampler = sampling.Sampler(),
                      ) -> InferenceThroughput:
    """Prefill and generation throughput of ``batch`` random prompts of ``prompt_len`` tokens.

    ``gen_len`` tokens are produced per row (the first by prefill). Stop tokens are
    off, so every row decodes the full length. Returns medians over ``reps``.
    """
    b = _Bench(config, params, batch, prompt_len, gen_len, sampler)
    prefill_s = median_time(b.prefill, reps, warmup)
    decode_s = b.time_decode(reps, warmup)
    return InferenceThroughput(batch, prompt_len, gen_len, prefill_s, decode_s)


# --------------------------------------------------------------------------- decode profile

# Components of a decode step, in report order. Each HLO instruction is assigned
# by the name scopes in its ``op_name`` metadata (Flax module names such as
# ``q_norm`` or ``ffn``, and the ``rope`` / ``attention_core`` / ``kv_cache_write`` /
# ``sampling`` scopes of elmjax's model and sampler), the first rule that matches.
DECODE_COMPONENTS = (
    ("RoPE", ("rope",)),
    ("q/k RMSNorm", ("q_norm", "k_norm")),
    ("KV cache writes", ("kv_cache_write",)),
    ("attention core (QK, softmax, AV)", ("attention_core",)),
    ("RMSNorm (attn, ffn, final)", ("attn_norm", "ffn_norm", "norm")),
    ("sampling", ("sampling",)),
    ("attention projections", ("qkv_proj", "out_proj")),
    ("FFN", ("ffn",)),
    ("LM head", ("OpenELM.logits",)),
    ("embedding", ("OpenELM.embed",)),
)
OTHER = "other (residuals, bookkeeping)"


def _hlo_instructions(hlo_text: str) -> tuple[str, dict, dict]:
    """Parses optimised HLO text: ``(module name, instructions, computations)``.

    instructions: name -> dict(kind, op_name, calls, operands, dims);
    computations: name -> its instruction names in order (the last is the root).
    """
    module = re.match(r"HloModule ([\w.\-]+)", hlo_text).group(1)
    inst, comps, current = {}, {}, None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if head:
            current = head.group(1)
            comps[current] = []
            continue
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*)$", line)
        if not m or current is None:
            continue
        name, typ, kind, rest = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', line)
        calls = re.search(r"calls=%([\w.\-]+)", line)
        shape = re.match(r"\w+\[([\d,]*)\]", typ)
        inst[name] = dict(kind=kind, op_name=op_name.group(1) if op_name else "",
                          calls=calls.group(1) if calls else None,
                          operands=re.findall(r"%([\w.\-]+)", rest[:rest.find(")")]),
                          dims=tuple(int(d) for d in shape.group(1).split(",") if d)
                          if shape else None)
        comps[current].append(name)
    return module, inst, comps


def _component_of_scope(op_name: str) -> str | None:
    if not op_name:
        return None
    parts = set(op_name.split("/"))
    for component, scopes in DECODE_COMPONENTS:
        if parts.intersection(scopes):
            return component
    return OTHER


class _Attribution:
    """Assigns each instruction of a compiled decode program to a component.

    Matmuls often lose their metadata in XLA's rewrites; a matmul is then assigned by
    its weight operand (matched by shape against the parameters), and a matmul with
    batch dimensions is attention's QK / AV. Fusions without metadata take their
    root's component; other unnamed instructions that of their first computed operand.
    """

    def __init__(self, hlo_text: str, params):
        self.module, self.inst, self.comps = _hlo_instructions(hlo_text)
        self.weights = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            comp = _component_of_scope("/".join(
                "OpenELM.logits" if getattr(k, "key", "") == "token_embeddings"
                else str(getattr(k, "key", k)) for k in path))
            self.weights.setdefault(tuple(leaf.shape), set()).add(comp)
        self._memo = {}

    def _dot(self, i) -> str:
        for n, o in enumerate(i["operands"]):
            found = self.weights.get(self.inst.get(o, {}).get("dims"), set())
            if len(found) == 1:
                return next(iter(found))
            if found:  # a weight shape shared by components: the sub-layer feeding it decides
                other = i["operands"][1 - n] if len(i["operands"]) == 2 else None
                return self._sublayer(other) or " or ".join(sorted(found))
        return "attention core (QK, softmax, AV)"

    def _sublayer(self, name, depth: int = 0) -> str | None:
        """Which weight a matmul fed by ``name`` uses, from the nearest scope producing it:
        after ``attn_norm`` or inside ``attn`` the attention projections, after
        ``ffn_norm`` or inside ``ffn`` the FFN's, after the final norm the LM head."""
        i = self.inst.get(name)
        if i is None or depth > 8:
            return None
        parts = set(i["op_name"].split("/"))
        for scopes, component in (({"OpenELM.logits"}, "LM head"), ({"ffn", "ffn_norm"}, "FFN"),
                                  ({"attn", "attn_norm"}, "attention projections")):
            if parts & scopes:
                return component
        if i["op_name"]:
            return None
        if i["calls"] in self.comps and self.comps[i["calls"]]:
            return self._sublayer(self.comps[i["calls"]][-1], depth + 1)
        return next((f for f in (self._sublayer(o, depth + 1) for o in i["operands"]) if f), None)

    def component(self, name: str, depth: int = 0) -> str:
        if name in self._memo:
            return self._memo[name]
        i = self.inst[name]
        comp = _component_of_scope(i["op_name"])
        if comp is None and i["kind"] == "dot":
            comp = self._dot(i)
        if comp is None and i["calls"] in self.comps and self.comps[i["calls"]]:
            comp = self.component(self.comps[i["calls"]][-1], depth + 1)
        if comp is None and depth < 8:
            for o in i["operands"]:
                if o in self.inst and self.inst[o]["kind"] not in (
                        "parameter", "get-tuple-element", "constant"):
                    comp = self.component(o, depth + 1)
                    break
        self._memo[name] = comp = comp or OTHER
        return comp


@dataclasses.dataclass
class DecodeProfile:
    """Decode time by component from a profiler trace (see ``decode_profile``).

    step_ms: wall-clock ms per decode step while tracing; op_ms: per component, ms
    per step summed over the operations (kernels / thunks) it ran; ops: per
    component, operations per step. Operations may run concurrently, so the sum of
    ``op_ms`` can exceed ``step_ms``; shares are of that sum.
    """

    step_ms: float
    op_ms: dict
    ops: dict

    @property
    def total_ms(self) -> float:
        return sum(self.op_ms.values())

    def share(self, component: str) -> float:
        return self.op_ms.get(component, 0.0) / self.total_ms

    def format(self) -> str:
        rows = [f"{'component':<34} {'ms/step':>8} {'share':>7} {'ops/step':>9}"]
        order = [c for c, _ in DECODE_COMPONENTS] + [OTHER]
        for name in order + sorted(set(self.op_ms) - set(order)):
            if name in self.op_ms:
                rows.append(f"{name:<34} {self.op_ms[name]:>8.3f} "
                            f"{100 * self.share(name):>6.1f}% {self.ops[name]:>9.0f}")
        rows.append(f"{'sum of operations':<34} {self.total_ms:>8.3f} {100.0:>6.1f}%")
        rows.append(f"{'wall clock per step':<34} {self.step_ms:>8.3f}")
        return "\n".join(rows)


def decode_profile(config, params, batch: int, prompt_len: int, gen_len: int, reps: int = 3,
                   sampler: sampling.Sampler = sampling.Sampler()) -> DecodeProfile:
    """Where decode time goes: ``reps`` decode loops of ``gen_len - 1`` steps under
    ``jax.profiler``, each operation's time assigned to a component (``DECODE_COMPONENTS``).

    This measures the program as it runs, unlike timing variants with a component
    removed (which changes what XLA fuses and schedules).
    """
    b = _Bench(config, params, batch, prompt_len, gen_len, sampler)
    loop = b.fresh_loop()
    args = (b.params, b.prefill(), b.budget, b.stop, b.key, b.pad)
    compiled = loop.lower(*args).compile()
    attribution = _Attribution(compiled.as_text(), b.params)
    jax.block_until_ready(compiled(*args))  # warm-up
    wall = 0.0
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(reps):
                state = jax.block_until_ready(b.prefill())
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(b.params, state, b.budget, b.stop, b.key, b.pad))
                wall += time.perf_counter() - t0
        traces = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        if not traces:
            raise RuntimeError(f"jax.profiler wrote no trace under {trace_dir}")
        with gzip.open(traces[0]) as f:
            events = json.load(f)["traceEvents"]
    steps = reps * (gen_len - 1)
    op_us, ops = {}, {}
    for e in events:
        a = e.get("args", {})
        name = a.get("hlo_op")
        if (e.get("ph") != "X" or a.get("hlo_module") != attribution.module
                or name not in attribution.inst
                or attribution.inst[name]["kind"] in ("while", "conditional", "call")):
            continue  # control-flow ops contain the others; counting them would double
        comp = attribution.component(name)
        op_us[comp] = op_us.get(comp, 0.0) + e["dur"]
        ops[comp] = ops.get(comp, 0) + 1
    if not op_us:
        raise RuntimeError(f"the profiler trace has no operations of {attribution.module}; "
                           f"this backend's trace format is not understood")
    return DecodeProfile(1e3 * wall / steps, {k: v / 1e3 / steps for k, v in op_us.items()},
                         {k: v / steps for k, v in ops.items()})


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 10) -> float:
    """Measured device memory bandwidth in bytes/s: a jitted copy reads and writes ``nbytes``."""
    x = jnp.ones((nbytes // 4,), jnp.float32)
    copy = jax.jit(lambda a: a + 0.0)
    t = median_time(lambda: copy(x), reps, warmup=2)
    return 2 * x.nbytes / t


def decode_bytes_per_step(config, batch: int, cache_len: int) -> int:
    """Bytes a decode step must read: every weight once (in the compute dtype) plus the cache.

    The whole preallocated cache of ``cache_len`` slots is read (the attention spans all slots).
    """
    from elmjax.config import param_count
    from elmjax.inference.cache import cache_bytes

    m = model_section(config)
    return param_count(m) * jnp.dtype(m.dtype).itemsize + cache_bytes(m, batch, cache_len)


def generation_bound(config, batch: int, cache_len: int, bandwidth: float) -> float:
    """Memory-bandwidth limit on generation tokens/s (all rows): ``batch * bandwidth / bytes``."""
    return batch * bandwidth / decode_bytes_per_step(config, batch, cache_len)
