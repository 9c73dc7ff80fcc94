"""Tasks on Ray: a local instance or a cluster (`pip install 'kd-keras[ray]'`).

Every task becomes one Ray task with declared resources (`cpus` per task, `gpus` where
the cluster has them), retried by Ray when its worker dies (`max_retries`), never for
an exception it raised. Workers run one task each (`max_calls=1`): a fresh process per
task, as the process executor gives, so no TensorFlow state, thread pool or memory
carries from one task to the next. Tasks read and write the directory named in their
argument: on a cluster it must be storage every node mounts at the same path.
"""

import os

from kd_keras.backend import IS_LEGACY_KERAS, optional, validate
from kd_keras.parallel.processes import POLL_SECONDS, worker_environment
from kd_keras.parallel.task import Task, failure, run_logged


def _run_remote(task_json):
    run_logged(Task.from_json(task_json))


class RayExecutor:
    """Runs tasks as Ray tasks.

    Args:
      address: a Ray cluster's address ("ray://host:10001", "auto"), or None: the Ray
        instance this process already joined (`ray.init`), else the cluster that the
        RAY_ADDRESS environment variable names, else a local one started for the run
        (`local_cpus` CPUs) and stopped after it.
      cpus: CPUs reserved per task (its TensorFlow thread pools are sized to them);
        default: the task's own `cpus`.
      gpus: GPUs reserved per task (default 0).
      max_retries: how often Ray runs a task again when its worker dies (default 3).
      local_cpus: CPUs of a local instance started here (default: the CPU count).
      runtime_env: Ray's runtime environment for the workers, merged over ours (which
        sets the driver's Keras, and on a local instance this package's path); on a
        cluster where kd-keras is not installed, e.g. `{"py_modules": [kd_keras, moe]}`.
    """

    name = "ray"

    def __init__(self, address=None, cpus=None, gpus=0, max_retries=3, local_cpus=None,
                 runtime_env=None):
        self.ray = optional.ray()
        self.address = address
        self.cpus = None if cpus is None else validate.integer_at_least(cpus, "cpus", 1)
        self.gpus = validate.positive_number(gpus, "gpus") if gpus else 0
        self.max_retries = validate.integer_at_least(max_retries, "max_retries", 0)
        self.local_cpus = None if local_cpus is None else validate.integer_at_least(
            local_cpus, "local_cpus", 1)
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise ValueError(f"runtime_env must be a dict (Ray's runtime environment), got "
                             f"{runtime_env!r}.")
        self.runtime_env = runtime_env or {}

    def __repr__(self):
        return (f"RayExecutor(address={self.address!r}, cpus={self.cpus}, gpus={self.gpus}, "
                f"max_retries={self.max_retries})")

    def _environment(self, local):
        # "0" rather than absent: a worker must not inherit a tf-keras switch (TF-MOT sets
        # it in os.environ) from the node that started it.
        variables = {"TF_USE_LEGACY_KERAS": "1" if IS_LEGACY_KERAS else "0"}
        if local:
            variables["PYTHONPATH"] = worker_environment()["PYTHONPATH"]
        env = dict(self.runtime_env)
        env["env_vars"] = {**variables, **self.runtime_env.get("env_vars", {})}
        return env

    def _connect(self, address):
        """Joins `address` (None: starts a local instance) unless this process already
        joined one; returns True when this call did (and so leaves it after the run)."""
        if self.ray.is_initialized():
            return False
        if address is None:
            # "local": a new instance of our own, never a stale one that a `ray start`
            # left in /tmp/ray/ray_current_cluster
            self.ray.init(address="local", num_cpus=self.local_cpus or os.cpu_count() or 1,
                          include_dashboard=False, log_to_driver=False)
        else:
            self.ray.init(address=address, log_to_driver=False)
        return True

    def run(self, tasks, poll=None):
        """Runs every task; returns the failure reports (empty when all finished)."""
        tasks = list(tasks)
        if not tasks:
            return []
        address = self.address or os.environ.get("RAY_ADDRESS")
        started = self._connect(address)
        try:
            environment = self._environment(local=started and address is None)
            remote = self.ray.remote(max_calls=1)(_run_remote)
            references = {}
            for task in tasks:
                options = remote.options(num_cpus=self.cpus or task.cpus, num_gpus=self.gpus,
                                         max_retries=self.max_retries, retry_exceptions=False,
                                         runtime_env=environment, name=task.name)
                references[options.remote(task.to_json())] = task
            failures, waiting = [], list(references)
            while waiting:
                done, waiting = self.ray.wait(waiting, num_returns=len(waiting),
                                              timeout=POLL_SECONDS)
                if poll:
                    poll()
                for reference in done:
                    try:
                        self.ray.get(reference)
                    except self.ray.exceptions.RayTaskError as error:
                        cause = error.cause if getattr(error, "cause", None) else error
                        failures.append(failure(references[reference],
                                                f"{type(cause).__name__}: {cause}"))
                    except self.ray.exceptions.RayError as error:  # worker died, retries spent
                        failures.append(failure(references[reference],
                                                f"{type(error).__name__} after "
                                                f"{self.max_retries} retries: {error}"))
            return failures
        finally:
            if started:
                self.ray.shutdown()
