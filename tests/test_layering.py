"""The package's import arrows point one way (DESIGN: cli -> train/eval/inference/plan ->
model, data, parallel, checkpoint, ... -> config), the model never imports data or train code,
data never imports model code, nothing imports the CLI, and no module is over 500 lines."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "elmjax"

# Lower numbers are lower layers; a module may import its own layer or lower ones.
LAYERS = {
    "config": 0, "storage": 0,
    "model": 1, "data": 1, "parallel": 1, "checkpoint": 1, "metrics": 1, "perf": 1,
    "interop": 1, "presets": 1,
    "train": 2, "eval": 2, "inference": 2, "plan": 2,
    "cli": 3,
}
FORBIDDEN = {("model", "data"), ("model", "train"), ("data", "model"), ("data", "train")}


def _unit(module: str) -> str:
    """``elmjax.train.loop`` -> ``train``; the package's ``__init__`` -> ``elmjax``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "elmjax"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        yield name, path


def _imports(path):
    """Every ``elmjax...`` module imported anywhere in the file (lazy imports included)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("elmjax"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("elmjax"):
            if node.module == "elmjax":  # from elmjax import config, storage
                yield from (f"elmjax.{a.name}" for a in node.names)
            else:
                yield node.module


MODULES = list(_modules())


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(name, path):
    unit = _unit(name)
    if unit == "elmjax":  # the package's public entry points re-export the model and generate()
        return
    assert unit in LAYERS, f"{name}: add its unit to LAYERS"
    for target in _imports(path):
        other = _unit(target)
        if other == "elmjax" or other == unit:
            continue
        assert other in LAYERS, f"{name} imports unknown unit {target}"
        assert other != "cli", f"{name} imports the command line ({target})"
        assert (unit, other) not in FORBIDDEN, f"{name} must not import {target}"
        assert LAYERS[other] <= LAYERS[unit], (
            f"{name} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[other]}), a higher layer")


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_modules_stay_small(name, path):
    assert len(path.read_text().splitlines()) <= 500, f"{name} is over 500 lines: split it"
