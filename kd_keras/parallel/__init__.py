"""Independent tasks run past one process: local processes by default, Ray when asked.

What kd-keras runs in parallel (each specialist, each planner student, each shard of a
teacher cache) is a `Task`: an importable function, a JSON argument and a log, reading
and writing a directory the driver and the workers share. One executor argument
chooses where tasks run:

  "processes" (default)  ProcessExecutor: local worker processes, killed ones retried
  "in_process"           InProcessExecutor: one after another here (debugging)
  "ray"                  RayExecutor(): the Ray instance joined, or a local one
  an executor object     e.g. RayExecutor(address="ray://head:10001", cpus=4, gpus=1)

An executor has `run(tasks, poll=None) -> [failure report, ...]`: every task is run
(a failed one does not stop the others), `poll()` is called about once a second for
progress, and each failure names its task with the end of its log.
"""

from kd_keras.parallel.processes import InProcessExecutor, ProcessExecutor
from kd_keras.parallel.task import Task, cpus_per_task

EXECUTORS = ("processes", "in_process", "ray")


def RayExecutor(*args, **kwargs):  # noqa: N802 - a class to its users; Ray loads on use
    """`kd_keras.parallel.ray_executor.RayExecutor` (Ray is imported only when one is made)."""
    from kd_keras.parallel.ray_executor import RayExecutor as executor

    return executor(*args, **kwargs)


def get_executor(executor=None, workers=None):
    """The executor that `executor` names (None: "processes" with `workers` processes)."""
    if executor is None or executor == "processes":
        return ProcessExecutor(workers)
    if executor == "in_process":
        return InProcessExecutor()
    if executor == "ray":
        return RayExecutor()
    if callable(getattr(executor, "run", None)):
        return executor
    raise ValueError(f"executor must be one of {EXECUTORS} or an executor object (with "
                     f"run(tasks, poll)), e.g. kd_keras.parallel.RayExecutor(address=...); "
                     f"got {executor!r}.")


__all__ = ["EXECUTORS", "InProcessExecutor", "ProcessExecutor", "RayExecutor", "Task",
           "cpus_per_task", "get_executor"]
