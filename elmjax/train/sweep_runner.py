"""Runs a sweep on this host: several runs at once, each a separate ``elmjax train``
process on its own share of the local devices.

Why processes and not sub-meshes in one process: a run is then exactly the command
``elmjax sweep launch`` prints for a cluster, with its own data pipeline, signal handling,
compilation and log; a crash or out-of-memory in one run cannot take the others down; and
on CPU, where XLA's thread pool is per process, side-by-side runs really overlap. The cost
is one interpreter start and one compilation per run, small beside a run's training.

Device shares: each run sees ``devices_per_run`` devices — on CPU
``--xla_force_host_platform_device_count`` (the host's devices are virtual there), on GPU
``CUDA_VISIBLE_DEVICES``. One-at-a-time runs use the same shares, so a run computes the
same program either way and its losses are identical.

Restartable: a run whose status (``sweep_status.json``) says completed, or whose last
checkpoint is its last step, is skipped; any other run is started again and
``elmjax train`` resumes it from its latest checkpoint. SIGTERM/SIGINT to the runner is
passed on to the runs, which save at their next step boundary.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

from elmjax.train import sweep as sweep_lib

PROGRAM = (sys.executable, "-m", "elmjax.cli")


@dataclasses.dataclass
class Devices:
    """The local devices a sweep shares out: platform ("cpu" | "gpu") and count."""

    platform: str
    count: int


def probe_devices() -> Devices:
    """The platform and local device count a child process would see (asked in a
    subprocess, so this process never claims an accelerator)."""
    code = "import jax; print(jax.default_backend(), jax.local_device_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"could not list the local devices:\n{out.stderr[-2000:]}")
    platform, count = out.stdout.split()[-2:]
    return Devices("gpu" if platform in ("gpu", "cuda", "rocm") else platform, int(count))


def device_env(platform: str, ids: list[int], base: dict | None = None) -> dict:
    """Environment giving a child process exactly devices ``ids`` of ``platform``."""
    env = dict(os.environ if base is None else base)
    if platform == "cpu":
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={len(ids)}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    elif platform == "gpu":
        visible = env.get("CUDA_VISIBLE_DEVICES")
        physical = visible.split(",") if visible else [str(i) for i in range(max(ids) + 1)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(physical[i] for i in ids)
    else:
        raise ValueError(f"side-by-side runs need CPU or GPU devices, this host has {platform}: "
                         "run one at a time (--parallel 1 --devices-per-run all) or submit "
                         "`elmjax sweep launch` commands")
    return env


def saved_steps(run_dir: str) -> list[int]:
    """Steps with a finished checkpoint in ``run_dir/checkpoints`` (sorted)."""
    d = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def run_state(workdir: str, name: str, total_steps: int) -> str:
    """``completed`` | ``running`` | ``preempted`` | ``failed`` | ``interrupted`` (killed, or
    started outside the runner, with checkpoints short of the end) | ``not started``."""
    status = sweep_lib.read_status(workdir, name)
    steps = saved_steps(sweep_lib.run_dir(workdir, name))
    if (status and status["status"] == "completed") or (steps and steps[-1] >= total_steps):
        return "completed"
    if status and not (status["status"] == "running" and not _alive(status.get("pid"))):
        return status["status"]
    return "interrupted" if steps or os.path.exists(
        os.path.join(sweep_lib.run_dir(workdir, name), "metrics.jsonl")) else "not started"


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class _Stop:
    """Records SIGTERM/SIGINT while the runner waits, so it can pass them on."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_sweep(spec: str, workdir: str, *, parallel: int = 1, devices_per_run: int | None = None,
              extra_overrides=(), devices: Devices | None = None, log=print,
              poll_s: float = 0.5) -> dict:
    """Runs every unfinished run of sweep ``spec`` under ``workdir/NAME``.

    ``parallel``: runs at once; ``devices_per_run``: devices each run gets (default: the
    local devices divided by ``parallel``); ``devices``: the host's devices (probed if
    None). Every run's config is validated before any starts. Each run's output goes to
    ``workdir/NAME/train.log``. Returns ``{name: final state}`` (see ``run_state``).
    """
    runs = sweep_lib.resolve(spec, extra_overrides)
    sweep_lib.record_sweep(workdir, spec, extra_overrides)
    states = {name: run_state(workdir, name, cfg.train.steps) for name, _, cfg in runs}
    todo = [(name, ov) for name, ov, _ in runs if states[name] not in ("completed", "running")]
    for name, state in states.items():
        if state in ("completed", "running"):
            log(f"== {name}: {state} (another runner's process), skipped" if state == "running"
                else f"== {name}: completed, skipped")
    if not todo:
        return states
    devices = devices or probe_devices()
    per_run = devices_per_run or max(1, devices.count // max(parallel, 1))
    # CPU devices are virtual (XLA splits the host into as many as asked): any number of runs
    # fit, sharing the cores; accelerators are real and bound the runs at once.
    count = max(devices.count, parallel * per_run) if devices.platform == "cpu" else devices.count
    slots = min(parallel, count // per_run, len(todo))
    if slots < 1:
        raise ValueError(f"--devices-per-run {per_run} is more than the {devices.count} local "
                         f"{devices.platform} device(s)")
    log(f"== sweep {spec}: {len(todo)} run(s) to go, {slots} at a time, {per_run} "
        f"{devices.platform} device(s) each")
    free = [list(range(i * per_run, (i + 1) * per_run)) for i in range(slots)]
    active = {}  # name -> (process, device ids, start time, log file)
    stopped = set()  # runs already sent SIGTERM
    with _Stop() as stop:
        while todo or active:
            while todo and free and not stop.requested:
                name, overrides = todo.pop(0)
                ids = free.pop(0)
                active[name] = _start(spec, workdir, name, overrides, extra_overrides, devices,
                                      ids, log)
            if stop.requested:  # pass the stop on once; each run saves and exits 75
                for name in set(active) - stopped:
                    active[name][0].send_signal(signal.SIGTERM)
                    stopped.add(name)
                todo = []
            time.sleep(poll_s)
            for name in [n for n, (p, *_) in active.items() if p.poll() is not None]:
                proc, ids, t0, logf = active.pop(name)
                logf.close()
                free.append(ids)
                states[name] = _finish(workdir, name, proc, ids, t0, log)
    return states


def _start(spec, workdir, name, overrides, extra_overrides, devices, ids, log):
    argv = sweep_lib.train_argv(spec, workdir, name, overrides, extra_overrides, PROGRAM)
    d = sweep_lib.run_dir(workdir, name)
    os.makedirs(d, exist_ok=True)
    logf = open(os.path.join(d, "train.log"), "a")
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                            env=device_env(devices.platform, ids), start_new_session=True)
    sweep_lib.write_status(workdir, name, {"status": "running", "pid": proc.pid, "devices": ids,
                                           "started": t0, "command": argv[len(PROGRAM):]})
    log(f"== {name}: started on {devices.platform} device(s) {ids} (log {d}/train.log)")
    return proc, ids, t0, logf


def _finish(workdir, name, proc, ids, t0, log) -> str:
    rc = proc.returncode
    status = {0: "completed", sweep_lib.EXIT_PREEMPTED: "preempted"}.get(rc, "failed")
    wall = time.time() - t0
    sweep_lib.write_status(workdir, name, {"status": status, "returncode": rc, "devices": ids,
                                           "started": t0, "wall_s": wall})
    log(f"== {name}: {status} (exit {rc}) after {wall:.0f} s")
    return status
