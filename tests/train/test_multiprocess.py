"""Two processes on 127.0.0.1 (jax.distributed, gloo CPU collectives, 4 devices each) give the
same losses as one process with 8 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.train.conftest import ROOT

WORKER = str(ROOT / "tests" / "train" / "multiprocess_worker.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nprocs, devices_each, steps=3):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}")
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, WORKER, coordinator, str(nprocs), str(i), str(steps)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(nprocs)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.slow
def test_two_processes_match_one():
    (single,) = _run(1, 8)
    pair = _run(2, 4)
    assert single["devices"] == 8 and all(r["devices"] == 8 for r in pair)
    for r in pair:
        np.testing.assert_allclose(r["losses"], single["losses"], rtol=1e-5)
        np.testing.assert_allclose(r["param_sq_norm"], single["param_sq_norm"], rtol=1e-5)
