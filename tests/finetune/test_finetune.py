"""``finetune`` end to end: LoRA from a Hugging Face directory, loss falls, adapters-only
checkpoints resume onto the base, ``export --merge-adapters`` gives the adapted model."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from elmjax import checkpoint, cli, metrics
from elmjax.config import sft_config
from elmjax.interop import hf
from elmjax.model import peft
from elmjax.model.openelm import forward, init_params
from elmjax.train import finetune
from elmjax.presets import finetune_config
from tests.finetune.conftest import ALL_TARGETS, ROOT
from tests.train.conftest import tiny_run_config

SAMPLES = f"{ROOT}/data_mixtures/samples/sft/ultrafeedback.jsonl"
CONFIG_FILE = """
from tests.finetune.test_finetune import lora_config

def get_config(arg=None):
    return lora_config(int(arg))
"""


def saved_state(workdir, step=None):
    """The raw train-state tree of a checkpoint, as saved."""
    mgr = ocp.CheckpointManager(workdir / "checkpoints")
    try:
        return mgr.restore(step or mgr.latest_step(), args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore()))["state"]
    finally:
        mgr.close()


def lora_config(steps):
    cfg = tiny_run_config(steps=steps, every=4)
    cfg = finetune_config(cfg, SAMPLES, steps=steps, batch=8, lr=2e-2, seq_len=64, warmup=1,
                          min_lr_ratio=0.5)
    cfg.sft = sft_config(files=SAMPLES, window=32)
    cfg.data.pack_rows = 8
    cfg.checkpoint.every = 4
    cfg.log.every = 1
    cfg.peft.method, cfg.peft.rank, cfg.peft.alpha = "lora", 4, 8.0
    cfg.peft.dropout, cfg.peft.targets = 0.1, ALL_TARGETS
    cfg.checkpoint.adapters_only = True
    return cfg


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A base written in the HF layout, then 8 LoRA steps from it with ``elmjax finetune``
    (checkpoints at 4 and 8)."""
    root = tmp_path_factory.mktemp("ft")
    base = jax.device_get(init_params(lora_config(8), jax.random.key(5)))
    hf.save_hf(root / "base_hf", lora_config(8), base)
    (root / "lora_config.py").write_text(CONFIG_FILE)
    code = cli.main(["finetune", "--config", f"{root / 'lora_config.py'}:8", "--init",
                     str(root / "base_hf"), "--workdir", str(root / "lora")])
    assert code == 0
    return root


def test_lora_loss_falls_on_a_tiny_instruction_set(lora_run):
    root = lora_run
    losses = [r["loss"] for r in metrics.read_metrics(root / "lora")]
    assert len(losses) == 8 and np.mean(losses[-2:]) < losses[0] - 0.5, losses


def test_checkpoints_hold_adapters_only_and_resume_onto_the_base(lora_run):
    root = lora_run
    first_loss = metrics.read_metrics(root / "lora")[0]["loss"]
    assert set(saved_state(root / "lora", 8)["params"]) == {"adapters"}
    assert checkpoint.saved_config(root / "lora").finetune.init == str(root / "base_hf")
    # Resume to step 10: the trainer restores the adapters onto the base from --init.
    cfg = lora_config(10)
    cfg.optim.decay_steps = 8  # same schedule as the first run up to its end
    resumed = finetune.finetune(cfg, str(root / "lora"), str(root / "base_hf"))
    assert resumed.step == 10
    rows = metrics.read_metrics(root / "lora")
    assert [r["step"] for r in rows][-2:] == [9, 10] and resumed.status == "completed"
    # Continues from the trained adapters: far below where the run started.
    assert resumed.first_loss < first_loss - 0.5, (resumed.first_loss, first_loss)


def test_export_merge_adapters_writes_the_adapted_model(lora_run, capsys):
    root = lora_run
    out = root / "merged_hf"
    assert cli.main(["export", "--workdir", str(root / "lora"), "--out", str(out)]) == 2
    assert "--merge-adapters" in capsys.readouterr().err
    assert cli.main(["export", "--workdir", str(root / "lora"), "--out", str(out),
                     "--merge-adapters"]) == 0
    merged_cfg, merged = hf.load_hf(out)
    base_cfg, base = hf.load_hf(root / "base_hf")
    saved = checkpoint.saved_config(root / "lora")
    adapters = saved_state(root / "lora")["params"]["adapters"]
    tokens = np.random.default_rng(0).integers(0, 4096, (2, 12)).astype(np.int32)
    adapted = forward(saved, peft.apply(saved, base, adapters), tokens)
    np.testing.assert_allclose(np.asarray(forward(merged_cfg, merged, tokens)), np.asarray(adapted),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(adapted) - np.asarray(forward(base_cfg, base, tokens))).max() > 1e-3


def test_mismatched_or_baseless_resume_is_refused_at_start_up(lora_run):
    from elmjax.data.sft import SFTData
    from elmjax.train import loop

    root = lora_run
    cfg = lora_config(12)
    with pytest.raises(loop.TrainingError, match="adapters only"):
        loop.train(cfg, str(root / "lora"), data=SFTData(cfg))  # no base given
    cfg.peft.rank = 8
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="peft.rank"):
        finetune.finetune(cfg, str(root / "lora"), str(root / "base_hf"))
