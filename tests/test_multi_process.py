"""FIP in several JAX processes equals FIP in one (issue 29, item 4).

`multi_process_run.py` trains two FIP tasks under
`keras.distribution.DataParallel` over 4 CPU devices: in one process (4
devices), then in 2 processes on localhost (2 devices each, a coordinator
on 127.0.0.1). Each process feeds its part of every global batch; both
runs must end with the same weights and the same memory.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import BACKEND

RUNNER = os.path.join(os.path.dirname(__file__), "multi_process_run.py")
TIMEOUT_S = 240


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(num_processes, tmp_path):
    """Runs the runner in `num_processes` processes; process 0's arrays.

    A process that fails stops the others (they would wait for it in a
    collective); the failure message holds every process's stderr.
    """
    output = tmp_path / f"run{num_processes}.npz"
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, KERAS_BACKEND="jax", OMP_NUM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)  # the runner sets its devices
    logs, procs = [], []
    for i in range(num_processes):
        logs.append(tmp_path / f"run{num_processes}.process{i}.log")
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, RUNNER, str(i), str(num_processes),
                 coordinator, str(output)],
                env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    while (any(p.poll() is None for p in procs)
           and not any(p.poll() for p in procs)
           and time.monotonic() < deadline):
        time.sleep(0.2)
    timed_out = all(p.poll() is None for p in procs)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    codes = [p.returncode for p in procs]
    if any(codes) or not output.exists():
        stderr = "\n".join(
            f"--- process {i} (exit code {code}) ---\n"
            + "\n".join(log.read_text().splitlines()[-40:])
            for i, (code, log) in enumerate(zip(codes, logs)))
        pytest.fail(
            f"The {num_processes}-process run of {RUNNER} failed"
            + (f" (stopped after {TIMEOUT_S} s)" if timed_out else "")
            + f"; coordinator {coordinator}; exit code -9: stopped when "
            f"another process failed.\n{stderr}", pytrace=False)
    with np.load(output) as arrays:
        return dict(arrays)


@pytest.mark.skipif(BACKEND != "jax",
                    reason="keras.distribution.initialize over several "
                           "processes is JAX's")
def test_two_processes_on_localhost_match_one_process(tmp_path):
    one = _launch(1, tmp_path)
    two = _launch(2, tmp_path)
    assert int(one["processes"]) == 1 and int(two["processes"]) == 2
    weights = sorted(k for k in one if k.startswith("weight_"))
    assert weights and weights == sorted(k for k in two
                                         if k.startswith("weight_"))
    for name in weights:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4,
                                   atol=1e-5, err_msg=name)
    # The memory: the same samples in both runs, filled by the first task
    # and protected during the second (anchored, a nonzero invariance term).
    for run in (one, two):
        assert int(run["memory_stored_after_first"]) == 16
        assert run["memory_active_at_begin"].tolist() == [False, True]
        assert int(run["memory_size"]) == 16
        assert float(run["invariance_loss"]) > 1e-3
    np.testing.assert_array_equal(two["memory_inputs"], one["memory_inputs"])
    np.testing.assert_allclose(two["invariance_loss"], one["invariance_loss"],
                               rtol=1e-4, atol=1e-6)
    # as_numpy gathered an array sharded over both processes' devices.
    assert not bool(two["sharded_fully_addressable"])


@pytest.mark.skipif(BACKEND != "jax", reason="JAX arrays")
def test_as_numpy_reads_a_one_process_array_without_a_collective(
        monkeypatch):
    import jax
    from jax.experimental import multihost_utils

    from keras_fip.arrays import as_numpy

    def refuse(*args, **kwargs):
        raise AssertionError("a collective in a one-process run")

    monkeypatch.setattr(multihost_utils, "process_allgather", refuse)
    x = jax.numpy.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(as_numpy(x), np.arange(6.0).reshape(3, 2))
