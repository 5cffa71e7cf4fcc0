"""Sharding fallbacks: replicated when the mesh does not divide a dimension, logged per call."""

import logging

import jax
from jax.sharding import PartitionSpec as P

from elmjax import parallel


def _fallback_warnings(caplog, mesh):
    """The warnings of one ``tree_shardings`` call over two arrays with a 127-wide vocab axis."""
    abstract = {"embed": jax.ShapeDtypeStruct((127, 16), "float32"),
                "head": jax.ShapeDtypeStruct((127, 32), "float32")}
    logical = {"embed": P("vocab", "embed"), "head": P("vocab", "embed")}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="elmjax.parallel"):
        sh = parallel.tree_shardings(mesh, abstract, logical,
                                     parallel.parse_rules(parallel.DEFAULT_RULES))
    assert sh["embed"].spec == P(None, "fsdp") and sh["head"].spec == P(None, "fsdp")
    return [r.getMessage() for r in caplog.records if r.name == "elmjax.parallel"]


def test_fallback_is_logged_once_per_call_and_not_remembered_across_calls(caplog):
    mesh = jax.make_mesh((1, 4, 2), parallel.MESH_AXES,
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    first = _fallback_warnings(caplog, mesh)
    second = _fallback_warnings(caplog, mesh)
    assert len(first) == 1 and "vocab=127" in first[0] and "2 array(s)" in first[0], first
    assert second == first  # a second call (another run in this process) is told again


def test_spec_for_reports_fallbacks_to_the_caller():
    mesh = jax.make_mesh((1, 4, 2), parallel.MESH_AXES,
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    rules = parallel.parse_rules(parallel.DEFAULT_RULES)
    found = []
    assert parallel.spec_for((127, 16), P("vocab", "embed"), rules, mesh, found) == P(None, "fsdp")
    assert parallel.spec_for((128, 16), P("vocab", "embed"), rules, mesh, found) == P("tensor", "fsdp")
    assert found == [parallel.Fallback("vocab", 127, ("tensor",), 2)]
