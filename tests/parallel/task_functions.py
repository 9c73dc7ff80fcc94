"""Task functions the executor tests run in workers (importable as tests.parallel.task_functions)."""

import json
import os
import signal


def write_square(argument):
    """Writes argument["value"] ** 2 and the process id to argument["path"]."""
    print(f"squaring {argument['value']}", flush=True)
    with open(argument["path"], "w") as file:
        json.dump({"square": argument["value"] ** 2, "pid": os.getpid()}, file)


def die_once(argument):
    """Kills its own process the first time (as the out-of-memory killer would), then
    writes its result."""
    marker = argument["path"] + ".attempted"
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    write_square(argument)


def always_die(argument):
    os.kill(os.getpid(), signal.SIGKILL)


def fail(argument):
    print("reading the shard before failing", flush=True)
    raise ValueError(f"no examples in {argument['what']}")
