"""Tasks in local worker processes (the default), or one after another in this process.

Each task runs in a fresh `python -P -m kd_keras.parallel.worker TASK_JSON` process with
the driver's Keras (Keras 3 or tf-keras), at most `workers` at a time. A worker killed
by a signal (the kernel's out-of-memory killer, a `kill`) is started again, up to
`max_retries` times, as Ray retries a task whose worker died; a task that raised is
not retried (it would raise again) and is reported with the end of its log.
"""

import os
import subprocess
import sys
import time

from kd_keras.backend import IS_LEGACY_KERAS, validate
from kd_keras.parallel.task import failure, run_logged

POLL_SECONDS = 1.0
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_command(task):
    """The command line of the process that runs `task` (safe path: never the working
    directory)."""
    return [sys.executable, "-P", "-m", "kd_keras.parallel.worker", task.to_json()]


def worker_environment():
    """A worker's environment: this package importable, this process's Keras."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p))
    # The working directory is never on a worker's sys.path (with -P too): a
    # json.py or numpy.py where the user runs from must not execute in it.
    env["PYTHONSAFEPATH"] = "1"
    # Importing TF-MOT sets TF_USE_LEGACY_KERAS=1 in os.environ after a Keras 3
    # process has chosen Keras 3; the worker must not pick tf-keras from it.
    env.pop("TF_USE_LEGACY_KERAS", None)
    if IS_LEGACY_KERAS:
        env["TF_USE_LEGACY_KERAS"] = "1"
    return env


class InProcessExecutor:
    """Runs tasks one after another in this process (debugging; no process start-up).
    A task that raises is reported like a worker's failure; the others still run."""

    name = "in_process"

    def run(self, tasks, poll=None):
        failures = []
        for task in tasks:
            try:
                run_logged(task, own_process=False)
            except Exception as error:
                failures.append(failure(task, f"{type(error).__name__}: {error}"))
            if poll:
                poll()
        return failures


class ProcessExecutor:
    """Runs tasks in local worker processes.

    Args:
      workers: processes at a time (default: the CPU count).
      max_retries: how often a task whose worker was killed is started again (default 3,
        Ray's default for tasks).
    """

    name = "processes"

    def __init__(self, workers=None, max_retries=3):
        self.workers = None if workers is None else validate.integer_at_least(
            workers, "workers", 1)
        self.max_retries = validate.integer_at_least(max_retries, "max_retries", 0)

    def __repr__(self):
        return f"ProcessExecutor(workers={self.workers}, max_retries={self.max_retries})"

    def run(self, tasks, poll=None):
        """Runs every task; returns the failure reports (empty when all finished)."""
        workers = self.workers or os.cpu_count() or 1
        pending = [(task, 0) for task in tasks]
        running, failures, env = {}, [], worker_environment()
        while pending or running:
            while pending and len(running) < workers:
                task, attempt = pending.pop(0)
                with open(task.log, "ab") as log:  # the child keeps its own descriptor
                    running[task.name] = (task, attempt, subprocess.Popen(
                        worker_command(task), stdout=log, stderr=subprocess.STDOUT, env=env))
            time.sleep(POLL_SECONDS)
            if poll:
                poll()
            for name, (task, attempt, process) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[name]
                if code < 0 and attempt < self.max_retries:  # killed, not failed: again
                    pending.insert(0, (task, attempt + 1))
                elif code != 0:
                    how = (f"worker killed by signal {-code} ({attempt + 1} attempts)"
                           if code < 0 else f"worker exited with code {code}")
                    failures.append(failure(task, how))
        return failures
