"""The decode-time breakdown: every operation of the compiled decode step is attributed."""

import collections
import re

import pytest

from elmjax.inference import sampling
from elmjax.inference.decode_profile import Attribution, decode_profile
from elmjax.inference.throughput import DecodeBench

LAYERS = 3


@pytest.fixture(scope="module")
def decode_program(lm):
    """(optimised HLO text, attribution) of the tiny model's decode loop."""
    m, params = lm
    b = DecodeBench(m, params, 1, 8, 6, sampling.Sampler())
    hlo = b.fresh_loop().lower(b.params, b.prefill(), b.budget, b.stop, b.key,
                               b.pad).compile().as_text()
    return hlo, Attribution(hlo, b.params)


def test_every_matmul_is_attributed_to_its_sublayer(decode_program):
    """Each layer has 2 attention and 2 FFN weight matmuls, plus one LM head, and the
    matmuls with batch dimensions (QK, AV) belong to the attention core."""
    _, attribution = decode_program
    dots = [n for n, i in attribution.inst.items() if i["kind"] == "dot"]
    by_component = collections.Counter(attribution.component(n) for n in dots)
    assert by_component["attention projections"] == 2 * LAYERS
    assert by_component["FFN"] == 2 * LAYERS
    assert by_component["LM head"] == 1
    assert by_component["attention core (QK, softmax, AV)"] == len(dots) - 4 * LAYERS - 1


def test_named_scopes_reach_their_components(decode_program):
    _, attribution = decode_program
    expected = {"q_norm": "q/k RMSNorm", "k_norm": "q/k RMSNorm", "rope": "RoPE",
                "ffn_norm": "RMSNorm (attn, ffn, final)", "kv_cache_write": "KV cache writes",
                "sampling": "sampling"}
    seen = collections.defaultdict(set)
    for name, i in attribution.inst.items():
        for scope in expected:
            if scope in i["op_name"].split("/"):
                seen[scope].add(attribution.component(name))
    assert {s: comps for s, comps in seen.items()} == {s: {c} for s, c in expected.items()}


def test_decode_does_not_copy_the_embedding(lm, decode_program):
    """The tied head contracts the [vocab, embed] table in place: no transposed copy of it
    is made per step (that copy once cost a third of a 270M decode step on CPU)."""
    m, _ = lm
    hlo, _ = decode_program
    table = rf"\[{m.vocab_size},{m.model_dim}\]|\[{m.model_dim},{m.vocab_size}\]"
    copies = [line for line in hlo.splitlines()
              if re.search(rf"= f32({table})\S* (copy|transpose)\(", line)]
    assert not copies, copies


def test_profile_accounts_for_every_operation(lm):
    m, params = lm
    p = decode_profile(m, params, batch=1, prompt_len=8, gen_len=6, reps=2)
    assert p.step_ms > 0 and p.total_ms > 0
    assert {"attention projections", "FFN", "LM head", "RMSNorm (attn, ffn, final)",
            "q/k RMSNorm"} <= set(p.op_ms)
    assert p.ops["LM head"] == pytest.approx(1.0)  # one head matmul per decode step
    assert sum(p.share(c) for c in p.op_ms) == pytest.approx(1.0)
    assert "sum of operations" in p.format()
