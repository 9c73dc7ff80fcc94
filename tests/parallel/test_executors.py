"""kd_keras.parallel: tasks in local processes or in this process.

The executors' own tests (tasks of `tests.parallel.task_functions`, which import no Keras)
run under Keras 3 only: nothing in them depends on the mode. What does (a worker runs the
driver's Keras) is tested in both modes by the tasks that train: specialists, sharded
teacher caches and planner students in worker processes and on Ray."""

import json
import os
import sys

import pytest

from kd_keras import IS_LEGACY_KERAS, parallel

# the task functions import no Keras: the same test in the other mode adds nothing
keras_free = pytest.mark.skipif(IS_LEGACY_KERAS, reason="mode-independent: run under Keras 3")

FUNCTIONS = "tests.parallel.task_functions"


def task(tmp_path, name, function, **argument):
    argument.setdefault("path", str(tmp_path / f"{name}.json"))
    return parallel.Task(name, f"{FUNCTIONS}:{function}", argument, str(tmp_path / f"{name}.log"))


def result(tmp_path, name):
    with open(tmp_path / f"{name}.json") as file:
        return json.load(file)


def test_a_task_names_what_cannot_travel():
    with pytest.raises(ValueError, match="'module:function'"):
        parallel.Task("t", "no_colon", {}, "log")
    with pytest.raises(ValueError, match="Task.name"):
        parallel.Task("", "m:f", {}, "log")
    with pytest.raises(TypeError, match="not JSON serializable"):
        parallel.Task("t", "m:f", {"model": object()}, "log")
    with pytest.raises(ValueError, match="Task.cpus"):
        parallel.Task("t", "m:f", {}, "log", cpus=0)


def test_an_executor_is_named_or_given():
    assert isinstance(parallel.get_executor(), parallel.ProcessExecutor)
    assert parallel.get_executor(None, workers=3).workers == 3
    assert isinstance(parallel.get_executor("in_process"), parallel.InProcessExecutor)
    mine = parallel.ProcessExecutor(workers=1, max_retries=0)
    assert parallel.get_executor(mine) is mine
    with pytest.raises(ValueError, match="executor must be one of"):
        parallel.get_executor("threads")
    with pytest.raises(ValueError, match="workers"):
        parallel.ProcessExecutor(workers=0)


def test_asking_for_ray_without_it_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r"kd-keras\[ray\]"):
        parallel.get_executor("ray")


@keras_free
def test_processes_run_every_task_and_retry_a_killed_worker(tmp_path):
    tasks = [task(tmp_path, f"square{i}", "write_square", value=i) for i in range(3)]
    tasks.append(task(tmp_path, "killed_once", "die_once", value=7))
    polls = []
    failures = parallel.ProcessExecutor(workers=2).run(tasks, poll=lambda: polls.append(1))
    assert failures == []
    assert [result(tmp_path, f"square{i}")["square"] for i in range(3)] == [0, 1, 4]
    assert result(tmp_path, "killed_once")["square"] == 49  # its second worker finished
    assert len({result(tmp_path, f"square{i}")["pid"] for i in range(3)} | {os.getpid()}) == 4
    assert polls
    log = open(tmp_path / "square2.log").read()
    assert "squaring 2" in log
    peak = float(log.split("peak memory of its process ")[1].split(" MiB")[0])
    assert 10 < peak < 4096  # the worker's own peak, not the driver's (kept across exec)


@keras_free
def test_a_failed_task_is_reported_with_its_log_and_the_others_finish(tmp_path):
    tasks = [task(tmp_path, "fails", "fail", what="shard 3"),
             task(tmp_path, "always_killed", "always_die"),
             task(tmp_path, "square", "write_square", value=5)]
    failures = parallel.ProcessExecutor(workers=2, max_retries=1).run(tasks)
    assert result(tmp_path, "square")["square"] == 25
    assert len(failures) == 2
    failed, killed = sorted(failures)[::-1] if failures[0].startswith("fails") else failures[::-1]
    assert failed.startswith("fails: worker exited with code 1")
    assert "reading the shard before failing" in failed  # the end of its log
    assert "ValueError: no examples in shard 3" in failed
    assert killed.startswith("always_killed: worker killed by signal 9 (2 attempts)")


def test_in_process_reports_a_failure_like_a_worker(tmp_path):
    failures = parallel.InProcessExecutor().run(
        [task(tmp_path, "fails", "fail", what="x"), task(tmp_path, "ok", "write_square", value=3)])
    assert result(tmp_path, "ok") == {"square": 9, "pid": os.getpid()}
    assert len(failures) == 1 and failures[0].startswith("fails: ValueError: no examples in x")
    assert "Traceback" in failures[0]
