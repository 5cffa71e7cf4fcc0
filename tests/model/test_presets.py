"""Run configs are files loaded by path: no installed `experiments` package, any working dir."""

import importlib.metadata
import pathlib
import sys

from elmjax import presets

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"


def test_installed_distribution_claims_only_the_elmjax_name():
    """The installed metadata lists the top-level names the distribution claims (re-run
    ``pip install -e .`` after changing setup.cfg); `experiments` is not one."""
    dist = importlib.metadata.distribution("elmjax")
    top_level = (dist.read_text("top_level.txt") or "").split()
    assert top_level == ["elmjax"], top_level


def test_presets_build_on_each_other_from_another_directory(tmp_path, monkeypatch):
    """quickstart_lora -> quickstart_sft -> quickstart by path, with the cwd elsewhere."""
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    lora = presets.config_module(EXPERIMENTS / "quickstart_lora.py").get_config("steps=7")
    quickstart = presets.config_module(EXPERIMENTS / "quickstart.py").get_config()
    assert lora.peft.method == "lora" and lora.train.steps == 7
    assert lora.model.model_dim == quickstart.model.model_dim  # the base it builds on
    assert not {m for m in set(sys.modules) - before if "quickstart" in m}


def test_sweep_resolves_from_another_directory(tmp_path, monkeypatch):
    from elmjax.train import sweep

    monkeypatch.chdir(tmp_path)
    runs = sweep.resolve(str(EXPERIMENTS / "sweeps" / "quickstart_phase2.py"))
    assert len(runs) == 6
    assert {cfg.curriculum.phases for _, _, cfg in runs} == {"web,refined"}
