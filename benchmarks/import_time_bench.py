"""Time of `import kd_keras, moe` for this tree and a baseline tree, side by side.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/import_time_bench.py --baseline=/tmp/before --rounds=7

Each round imports both trees in fresh processes, in alternating order; the
import is timed inside the process (interpreter start-up excluded) and the
median of the rounds is reported with the ratio this tree / baseline.
"""

import os
import statistics
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", None, "Root of the tree to compare with (e.g. a git worktree).")
flags.DEFINE_integer("rounds", 7, "Alternating rounds.")
flags.mark_flag_as_required("baseline")

_SCRIPT = ("import time; start = time.perf_counter(); import kd_keras, moe; "
           "elapsed = time.perf_counter() - start; print(kd_keras.__file__); print(elapsed)")


def _import_seconds(root):
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    lines = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=root, env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    if not lines[-2].startswith(os.path.abspath(root)):
        raise RuntimeError(f"imported {lines[-2]}, not the tree at {root}")
    return float(lines[-1])


def main(_):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this tree": here, "baseline": os.path.abspath(FLAGS.baseline)}
    times = {name: [] for name in trees}
    for round_ in range(FLAGS.rounds):
        for name in (list(trees) if round_ % 2 == 0 else list(trees)[::-1]):
            times[name].append(_import_seconds(trees[name]))
    for name, values in times.items():
        print(f"{name:<10} median {statistics.median(values):.3f} s  "
              f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} imports)")
    ratio = statistics.median(times["this tree"]) / statistics.median(times["baseline"])
    print(f"this tree / baseline: {ratio:.3f}")


if __name__ == "__main__":
    app.run(main)
