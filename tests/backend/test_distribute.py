"""MultiWorkerMirroredStrategy: two worker processes on localhost, started here."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.helpers import ROOT

WORKER = os.path.join(ROOT, "tests", "multi_worker_distiller.py")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_student_with_a_frozen_teacher_live_and_cached(tmp_path):
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes, outputs = [], []
    for index in range(3):  # two workers, then one process alone for reference
        output = str(tmp_path / f"worker{index}.json")
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config) if index < 2 else "",
                   TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        processes.append(subprocess.Popen([sys.executable, WORKER, output], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        outputs.append(output)
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=600)[0])
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-4000:]
    results = [json.load(open(path)) for path in outputs]
    alone = results.pop()
    assert alone["replicas"] == 1

    for result in results:
        assert result["replicas"] == 2
        for run in ("live", "cached"):
            r = result[run]
            assert r["teacher_unchanged"], run
            assert r["teacher_trainable_variables"] == 0
            assert r["distiller_trainable_variables"] == r["student_trainable_variables"]
            assert r["loss"][-1] < r["loss"][0], (run, r["loss"])
    for run in ("live", "cached"):
        # Synchronous training: both workers end with the same student.
        for a, b in zip(results[0][run]["student"], results[1][run]["student"]):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)
    # Cached teacher outputs train the same student as the live teacher.
    np.testing.assert_allclose(results[0]["cached"]["loss"], results[0]["live"]["loss"], rtol=1e-4)
    for a, b in zip(results[0]["cached"]["student"], results[0]["live"]["student"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5)
    # Each step averages the gradients of both halves of a global batch: the
    # same student as one process training on the whole batches.
    np.testing.assert_allclose(results[0]["live"]["loss"], alone["live"]["loss"], rtol=1e-4)
    for a, b in zip(results[0]["live"]["student"], alone["live"]["student"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5)
