"""Where decode time goes: a profiler trace of the decode loop, attributed to model parts.

``decode_profile`` runs the compiled decode loop under ``jax.profiler`` and assigns every
operation of the compiled program to a part of the model (attention, FFN, normalisation,
RoPE, LM head, sampling, ...) by the scope names in its HLO ``op_name`` metadata. The
parts and their scopes come from the model (``elmjax.model.openelm.COMPONENT_SCOPES``)
and the sampler (``elmjax.inference.sampling.SCOPE``); nothing here names a scope.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

from elmjax.inference import sampling
from elmjax.inference.throughput import DecodeBench
from elmjax.model import openelm

# Parts of a decode step, in report order, each with the scopes whose operations it owns.
DECODE_COMPONENTS = (*openelm.COMPONENT_SCOPES, ("sampling", (sampling.SCOPE,)))
OTHER = "other (residuals, bookkeeping)"


@dataclasses.dataclass(frozen=True)
class HloProgram:
    """An optimised HLO module parsed from its text (``compiled.as_text()``).

    module: the module name (what profiler events call ``hlo_module``); instructions:
    name -> dict(kind, op_name, calls, operands, dims) where ``dims`` is the result shape
    (None for tuples) and ``calls`` the computation a fusion/call runs; computations:
    name -> its instruction names in order (the last is the root).
    """

    module: str
    instructions: dict
    computations: dict


def parse_hlo(hlo_text: str) -> HloProgram:
    """Parses optimised HLO text into an ``HloProgram``."""
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
    return HloProgram(module, inst, comps)


def component_of_scope(op_name: str) -> str | None:
    """The part an ``op_name`` path (``"jit(f)/.../ffn/proj_1/dot_general"``) names; ``OTHER``
    when it names none; None when the metadata is empty."""
    if not op_name:
        return None
    parts = set(op_name.split("/"))
    for component, scopes in DECODE_COMPONENTS:
        if parts.intersection(scopes):
            return component
    return OTHER


class Attribution:
    """Assigns each instruction of a compiled decode program to a part of the model.

    hlo_text: the program's optimised HLO; params: the parameter tree it runs with. Matmuls
    often lose their metadata in XLA's rewrites; a matmul is then assigned by its weight
    operand (matched by shape against the parameters), and a matmul with no weight operand
    is attention's QK / AV. Fusions without metadata take their root's part; other unnamed
    instructions that of their first computed operand.
    """

    def __init__(self, hlo_text: str, params):
        program = parse_hlo(hlo_text)
        self.module, self.inst, self.comps = (program.module, program.instructions,
                                              program.computations)
        self.weights = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            comp = component_of_scope("/".join(
                openelm.LOGITS if getattr(k, "key", "") == openelm.TIED_EMBEDDING
                else str(getattr(k, "key", k)) for k in path))
            self.weights.setdefault(tuple(leaf.shape), set()).add(comp)
        self._memo = {}

    def _dot(self, i) -> str:
        for n, o in enumerate(i["operands"]):
            found = self.weights.get(self.inst.get(o, {}).get("dims"), set())
            if len(found) == 1:
                return next(iter(found))
            if found:  # a weight shape shared by parts: the sub-layer feeding it decides
                other = i["operands"][1 - n] if len(i["operands"]) == 2 else None
                return self._sublayer(other) or " or ".join(sorted(found))
        return openelm.ATTENTION_CORE

    def _sublayer(self, name, depth: int = 0) -> str | None:
        """Which weights a matmul fed by ``name`` uses, from the nearest scope producing it
        (``openelm.SUBLAYER_SCOPES``: after a sub-layer's pre-norm or inside it)."""
        i = self.inst.get(name)
        if i is None or depth > 8:
            return None
        parts = set(i["op_name"].split("/"))
        for scopes, component in openelm.SUBLAYER_SCOPES:
            if parts.intersection(scopes):
                return component
        if i["op_name"]:
            return None
        if i["calls"] in self.comps and self.comps[i["calls"]]:
            return self._sublayer(self.comps[i["calls"]][-1], depth + 1)
        return next((f for f in (self._sublayer(o, depth + 1) for o in i["operands"]) if f), None)

    def component(self, name: str, depth: int = 0) -> str:
        """The part instruction ``name`` belongs to (one of ``DECODE_COMPONENTS`` or ``OTHER``)."""
        if name in self._memo:
            return self._memo[name]
        i = self.inst[name]
        comp = component_of_scope(i["op_name"])
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
    """Decode time by part from a profiler trace (see ``decode_profile``).

    step_ms: wall-clock ms per decode step while tracing; op_ms: per part, ms per step
    summed over the operations (kernels / thunks) it ran; ops: per part, operations per
    step. Operations may run concurrently, so the sum of ``op_ms`` can exceed ``step_ms``;
    shares are of that sum.
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
        """A table: part, ms/step, share, operations/step, then the totals."""
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
    ``jax.profiler``, each operation's time assigned to a part (``DECODE_COMPONENTS``).

    This measures the program as it runs, unlike timing variants with a part removed
    (which changes what XLA fuses and schedules).
    """
    b = DecodeBench(config, params, batch, prompt_len, gen_len, sampler)
    compiled = b.fresh_loop().lower(b.params, b.prefill(), *b.loop_args).compile()
    attribution = Attribution(compiled.as_text(), b.params)
    jax.block_until_ready(compiled(b.params, b.prefill(), *b.loop_args))  # warm-up
    wall = 0.0
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(reps):
                state = jax.block_until_ready(b.prefill())
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(b.params, state, *b.loop_args))
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
