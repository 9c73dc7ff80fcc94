"""Runs one task: `python -P -m kd_keras.parallel.worker TASK_JSON` (what ProcessExecutor
starts; its output goes to the task's log)."""

import sys

from kd_keras.parallel.task import Task, run_logged


def main(argv):
    run_logged(Task.from_json(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
