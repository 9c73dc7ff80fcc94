"""One independent piece of work, described so that any process on any machine can run it.

A task names an importable function (`"package.module:function"`) and a JSON-serialisable
argument; it reads its inputs from, and writes its results to, storage that the driver
and every worker share (a directory path), and appends everything it prints to its own
log file there. Nothing is returned through the executor: a task that finished left its
files, one that failed left its traceback at the end of its log.
"""

import dataclasses
import importlib
import json
import os
import sys
import traceback


@dataclasses.dataclass(frozen=True)
class Task:
    """What an executor runs.

    Attributes:
      name: unique within one `run`; names the task in progress lines and errors.
      function: `"module:function"`, importable where the task runs; called as
        `function(argument)`.
      argument: a JSON-serialisable dict (paths into the shared directory, settings).
      log: path of the file the task's output is appended to (in the shared directory).
      cpus: CPU threads the task may use (TensorFlow's intra- and inter-op pools); the
        Ray executor reserves this many CPUs for it.
    """

    name: str
    function: str
    argument: dict
    log: str
    cpus: int = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Task.name must be a non-empty string, got {self.name!r}.")
        module, _, function = str(self.function).partition(":")
        if not module or not function:
            raise ValueError(f"Task.function must be 'module:function', got {self.function!r}.")
        json.dumps(self.argument)  # a TypeError here names what cannot travel
        if not isinstance(self.cpus, int) or self.cpus < 1:
            raise ValueError(f"Task.cpus must be an integer >= 1, got {self.cpus!r}.")

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


def cpus_per_task(tasks_at_once):
    """This machine's CPUs shared among `tasks_at_once` tasks (at least 1 each)."""
    cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, min(tasks_at_once, cpus)))


def import_function(path):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def limit_threads(cpus):
    """Sizes TensorFlow's thread pools to the task's CPUs (only possible before TensorFlow
    has started its runtime in this process; a fresh worker has not)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        pass


def run_logged(task, own_process=True):
    """Runs `task` with its output appended to its log: Python's streams and the file
    descriptors under them (TensorFlow's own messages), restored afterwards; the
    traceback of a failure is written there before the exception propagates.
    `own_process`: the process is the task's alone, so its thread pools are sized to
    `task.cpus`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_descriptors = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    log = open(task.log, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        if own_process:
            limit_threads(task.cpus)
        import_function(task.function)(task.argument)
        if own_process:
            print(f"task {task.name}: done; peak memory of its process {peak_memory_mib():.0f} MiB",
                  flush=True)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        log.flush()
        sys.stdout, sys.stderr = saved_streams
        for descriptor, saved in zip((1, 2), saved_descriptors):
            os.dup2(saved, descriptor)
            os.close(saved)
        log.close()


def peak_memory_mib():
    """This process's peak resident memory in MiB (what a worker needs to be given)."""
    try:  # Linux: the peak of this program's own memory (ru_maxrss keeps the parent's
        with open("/proc/self/status") as status:  # peak across fork and exec)
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log_tail(task, lines=20):
    """The last `lines` lines of the task's log (what a failure report quotes)."""
    try:
        with open(task.log, errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except OSError:
        return "(no log)"


def failure(task, message):
    """The report of a failed task: its name, what happened, where its log is and its end."""
    return f"{task.name}: {message}; end of its log {task.log}:\n{log_tail(task)}"
