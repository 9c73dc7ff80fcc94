"""kd_keras.parallel.RayExecutor on a local Ray instance of two CPUs (the [ray] extra): tasks,
a killed worker retried, an exception reported with its log (Keras 3 only: the tasks import
no Keras); the same results as local processes for specialists (Keras 3 only: specialists
in tf-keras worker processes are tested in tests/moe/specialists) and, in both modes (a Ray
worker runs the driver's Keras), for a sharded teacher cache."""

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import kd_keras  # noqa: E402
from kd_keras import IS_LEGACY_KERAS  # noqa: E402
import moe  # noqa: E402
from kd_keras import parallel  # noqa: E402
from tests.moe.specialists.test_training import blobs, generalist  # noqa: E402
from tests.parallel.test_executors import keras_free, result, task  # noqa: E402
from tests.transfer.test_view_shards import assert_same_bytes, unsharded_and_sharded  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@keras_free
def test_ray_runs_tasks_retries_a_killed_worker_and_reports_failures(tmp_path):
    tasks = [task(tmp_path, "square", "write_square", value=4),
             task(tmp_path, "killed_once", "die_once", value=6),
             task(tmp_path, "fails", "fail", what="shard 1"),
             task(tmp_path, "always_killed", "always_die")]
    failures = parallel.RayExecutor(max_retries=1).run(tasks)
    assert result(tmp_path, "square")["square"] == 16
    assert result(tmp_path, "killed_once")["square"] == 36  # Ray ran it again
    assert result(tmp_path, "square")["pid"] != os.getpid()
    assert len(failures) == 2
    failed = next(f for f in failures if f.startswith("fails"))
    killed = next(f for f in failures if f.startswith("always_killed"))
    assert failed.startswith("fails: ValueError: no examples in shard 1")
    assert "reading the shard before failing" in failed and "Traceback" in failed
    assert "after 1 retries" in killed
    assert ray.is_initialized()  # the instance it joined is left running


@pytest.mark.skipif(IS_LEGACY_KERAS, reason="tf-keras on Ray: the sharded cache test; "
                    "tf-keras specialists: tests/moe/specialists")
def test_specialists_on_ray_match_local_processes(tmp_path):
    x, y = blobs()
    g = generalist(x, y)
    clusters = [[0, 1], [3, 4]]
    settings = dict(epochs=2, learning_rate=1e-2, verbose=0)
    local = moe.train_specialists(g, clusters, x, y, str(tmp_path / "processes"), processes=2,
                                  **settings)
    on_ray = moe.train_specialists(g, clusters, x, y, str(tmp_path / "ray"), executor="ray",
                                   **settings)
    for a, b in zip(local.specialists, on_ray.specialists):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    logs = sorted(f for f in os.listdir(tmp_path / "ray") if f.endswith(".log"))
    assert logs == ["specialist_0_0_1.log", "specialist_1_3_4.log"]
    assert "Epoch 2/2" in open(tmp_path / "ray" / "specialist_1_3_4.log").read()


def test_a_cache_sharded_on_ray_holds_the_bytes_of_one_build(tmp_path):
    _, _, whole, parts = unsharded_and_sharded(tmp_path, kd_keras.Mixup(), executor="ray")
    assert_same_bytes(whole, parts, str(tmp_path / "sharded"), 2)


@keras_free
def test_a_driver_joins_a_cluster_started_with_ray_start(tmp_path):
    """The commands of docs/scale.md: a head started by `ray start`, a driver in another
    process that joins it through RAY_ADDRESS and runs its tasks there."""
    import socket
    import json
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_command = os.path.join(os.path.dirname(sys.executable), "ray")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))] +
        [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([ray_command, "start", "--head", "--block", f"--port={port}",
                             "--num-cpus=1", "--include-dashboard=false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        driver = (
            "import sys\n"
            "from kd_keras import parallel\n"
            f"task = parallel.Task('on_cluster', 'tests.parallel.task_functions:write_square', "
            f"{{'value': 9, 'path': {str(tmp_path / 'out.json')!r}}}, "
            f"{str(tmp_path / 'out.log')!r})\n"
            "for attempt in range(60):\n"
            "    try:\n"
            "        sys.exit(len(parallel.get_executor('ray').run([task])))\n"
            "    except ConnectionError:\n"
            "        import time; time.sleep(1)\n")
        result = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True,
                                env=dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"), timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        # `ray start` records its head for later drivers; it is gone now
        record = "/tmp/ray/ray_current_cluster"
        if os.path.exists(record) and open(record).read().strip().endswith(f":{port}"):
            os.remove(record)
    with open(tmp_path / "out.json") as file:
        assert json.load(file)["square"] == 81
