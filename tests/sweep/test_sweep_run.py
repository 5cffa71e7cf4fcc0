"""A 3-run tiny sweep: side by side on 8 virtual devices (2 per run) gives the same losses
as one at a time; a sweep stopped mid-run resumes, skipping finished runs; the report on
it has every column and plot file; launch commands and the job-array script."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from elmjax import cli
from elmjax.metrics import read_metrics
from elmjax.train import sweep, sweep_report, sweep_runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = '''
from elmjax.presets import base_config

def get_config(arg=None):
    c = base_config()
    m = c.model
    m.num_layers, m.model_dim, m.head_dim, m.num_gqa_groups = 2, 32, 16, 1
    m.ffn_dim_divisor, m.vocab_size, m.max_context_length = 16, 4096, 64
    c.data.mixture = "{root}/data_mixtures/quickstart.yaml"
    c.data.tokenizer = "{root}/data_mixtures/samples/tokenizer.model"
    c.data.seq_len = 32
    c.train.steps = 8
    c.train.global_batch_size = 8
    c.optim.peak_lr = 1e-2
    c.optim.warmup_steps = 2
    c.optim.decay_steps = 8
    c.checkpoint.every = 4
    c.log.every = 1
    return c

def get_sweep():
    return [("a", {{"model.model_dim": 32}}),
            ("b", {{"model.model_dim": 48, "train.steps": 120, "optim.decay_steps": 120,
                   "checkpoint.every": 40}}),
            ("c", {{"model.model_dim": 64, "model.qkv_multipliers": (0.25, 1.0)}})]
'''
CPU8 = sweep_runner.Devices("cpu", 8)


def _losses(workdir, name):
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, name)) if "loss" in r}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweepfile") / "tiny_sweep.py"
    path.write_text(SWEEP.format(root=ROOT))
    return str(path)


@pytest.fixture(scope="module")
def side_by_side(spec, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("side"))
    t0 = time.time()  # through the command line: the devices are probed (8 virtual CPUs)
    assert cli.main(["sweep", "run", spec, "--workdir", workdir, "--parallel", "3",
                     "--devices-per-run", "2"]) == 0
    assert all(sweep.read_status(workdir, n)["devices"] == ids
               for n, ids in zip("abc", ([0, 1], [2, 3], [4, 5])))
    return workdir, time.time() - t0


@pytest.mark.slow
def test_stopped_sweep_resumes_and_matches_side_by_side(spec, side_by_side, tmp_path):
    side_dir, _ = side_by_side
    workdir = str(tmp_path / "seq")
    code = ("import sys; from elmjax.train import sweep_runner as r; "
            "r.run_sweep(sys.argv[1], sys.argv[2], parallel=1, devices_per_run=2, "
            "devices=r.Devices('cpu', 8))")
    proc = subprocess.Popen([sys.executable, "-c", code, spec, workdir], cwd=ROOT)
    log_b = os.path.join(workdir, "b", "train.log")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # stop while run b is training
        if os.path.exists(log_b) and "first step done" in open(log_b).read():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert sweep.read_status(workdir, "a")["status"] == "completed"
    assert sweep.read_status(workdir, "b")["status"] == "preempted"
    assert sweep.read_status(workdir, "c") is None
    assert sweep_runner.saved_steps(os.path.join(workdir, "b"))[-1] < 120

    logs = []
    states = sweep_runner.run_sweep(spec, workdir, parallel=1, devices_per_run=2, devices=CPU8,
                                    log=logs.append)
    assert states == {"a": "completed", "b": "completed", "c": "completed"}
    assert "== a: completed, skipped" in logs
    assert not any(line.startswith("== a: started") for line in logs)
    assert "restored step" in open(log_b).read()
    for name in "abc":
        assert _losses(workdir, name) == _losses(side_dir, name), name
    assert sorted(_losses(side_dir, "b")) == list(range(1, 121))


@pytest.mark.slow
def test_report_has_every_column_and_plot(spec, side_by_side, tmp_path, capsys):
    side_dir, _ = side_by_side
    assert cli.main(["sweep", "report", spec, "--workdir", side_dir, "--out",
                     str(tmp_path / "cli_report"), "--bootstrap", "10"]) == 0
    assert "| run | status |" in capsys.readouterr().out
    out = sweep_report.write_report(spec, side_dir, str(tmp_path / "report"), bootstrap=20)
    for key in ("md", "csv", "json", "loss_vs_tokens", "loss_vs_flops", "loss_vs_compute",
                "isoflop"):
        assert os.path.getsize(out["files"][key]) > 0, key
    header = open(out["files"]["csv"]).readline().strip().split(",")
    assert header == list(sweep_report.COLUMNS)
    data = json.load(open(out["files"]["json"]))
    rows = {r["run"]: r for r in data["runs"]}
    assert rows["b"]["steps_done"] == 120 and rows["b"]["tokens"] == 120 * 8 * 32
    assert rows["a"]["final_loss"] == _losses(side_dir, "a")[8]
    assert rows["c"]["best_loss"] == min(_losses(side_dir, "c").values())
    assert all(r["status"] == "completed" and r["wall_s"] > 0 for r in rows.values())
    md = open(out["files"]["md"]).read()
    assert "too few runs" in md and "no compute budget has 3 or more model sizes" in md
    assert "runs too short to trust" in md
    for col in sweep_report.COLUMNS:
        assert col in md


def test_launch_commands_and_job_array_script(spec, tmp_path, capsys):
    cmds = sweep.launch_commands(spec, "/runs/tiny")
    assert cli.main(["sweep", "launch", spec, "--workdir", "/runs/tiny", "--print",
                     "--array-script", str(tmp_path / "job.sh"), "--sbatch=--time=1:00:00"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1:] == cmds
    assert "#SBATCH --time=1:00:00" in (tmp_path / "job.sh").read_text()
    assert len(cmds) == 3
    assert cmds[2].startswith(f"elmjax train --config {spec} --workdir /runs/tiny/c ")
    assert "'--config.model.qkv_multipliers=(0.25, 1.0)'" in cmds[2]
    script = sweep.slurm_array_script(cmds, sbatch_options=["--gres=gpu:1"])
    assert "#SBATCH --array=0-2" in script and "#SBATCH --gres=gpu:1" in script
    bash = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert bash.returncode == 0, bash.stderr


def test_device_shares_for_child_processes():
    env = sweep_runner.device_env("cpu", [2, 3], {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo"})
    assert env["XLA_FLAGS"].split() == ["--foo", "--xla_force_host_platform_device_count=2"]
    env = sweep_runner.device_env("gpu", [1, 2], {"CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    assert env["CUDA_VISIBLE_DEVICES"] == "5,6"
    with pytest.raises(ValueError, match="sweep launch"):
        sweep_runner.device_env("tpu", [0], {})
