"""Config files, validation and typed overrides."""

import pathlib

import pytest

from elmjax import config as C
from elmjax.model import schedule as S
from elmjax import presets

def _preset(name, arg=None):
    return presets.config_module(EXPERIMENTS / f"{name}.py").get_config(arg)


EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
CONFIG_FILES = sorted(EXPERIMENTS.glob("*.py"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_experiment_config_builds_and_validates(path):
    cfg = C.load(str(path))
    assert S.param_count(cfg) > 0


@pytest.mark.parametrize("key,value,needle", [
    ("model.dtype", "float8", "model.dtype"),
    ("model.attention", "flash", "model.attention"),
    ("model.remat", "some", "model.remat"),
    ("mesh.fsdp", 0, "mesh.fsdp"),
    ("optim.schedule", "linear", "optim.schedule"),
])
def test_validation_names_the_key(key, value, needle):
    cfg = _preset("quickstart")
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(C.ConfigError, match=needle):
        C.validate(cfg)


@pytest.mark.parametrize("path", sorted((EXPERIMENTS / "sweeps").glob("*.py")), ids=lambda p: p.stem)
def test_every_sweep_resolves_to_valid_configs(path):
    from elmjax.train import sweep

    runs = sweep.resolve(str(path))
    assert len(runs) > 1
    assert len({name for name, _, _ in runs}) == len(runs)


def test_command_line_overrides_are_typed():
    cfg = C.load("experiments/quickstart.py", ["--config.train.steps=7", "--config.model.dtype=bfloat16"])
    assert cfg.train.steps == 7 and cfg.model.dtype == "bfloat16"
    with pytest.raises(C.ConfigError, match="no_such_key"):
        C.load("experiments/quickstart.py", ["--config.train.no_such_key=1"])
    with pytest.raises(C.ConfigError):
        C.load("experiments/quickstart.py", ["--config.train.steps=many"])


def test_config_argument_string():
    cfg = C.load("experiments/openelm_270m.py:smoke=True")
    assert cfg.data.seq_len == 128 and cfg.model.dtype == "float32"
