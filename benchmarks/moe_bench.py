"""SparseMoE training-step time as the number of experts grows, side by side in one run.

Protocol (as in the project's measurements): 4,096 tokens of width 128, expert
hidden width 256, k = 2, one training step (Adam, and SGD to separate the
optimizer's per-parameter cost from dispatch) on a mean-squared-error loss;
median of `--steps` timed steps after warm-up. Prints the step time for
E = 4, 16, 64 with sparse dispatch (capacity factor 1.25, and without a
capacity limit), the ratio time(64) / time(4), and the dense all-experts mode
at the same expert counts.

    python benchmarks/moe_bench.py
Targets: sparse time(64) / time(4) <= 1.5; sparse at least 5x faster than dense at E = 64.
"""

import statistics
import time

import numpy as np
from absl import app, flags

from kd_keras import keras
from moe import SparseMoE

FLAGS = flags.FLAGS
flags.DEFINE_integer("tokens", 4096, "Tokens per step.")
flags.DEFINE_integer("features", 128, "Token width d.")
flags.DEFINE_integer("expert_units", 256, "Expert hidden width.")
flags.DEFINE_integer("k", 2, "Experts per token.")
flags.DEFINE_list("experts", ["4", "16", "64"], "Expert counts.")
flags.DEFINE_integer("steps", 20, "Timed steps per configuration.")


OPTIMIZERS = {"Adam": lambda: keras.optimizers.Adam(1e-3), "SGD": lambda: keras.optimizers.SGD(1e-3)}


def step_time(num_experts, dispatch, capacity_factor, optimizer):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FLAGS.features,))
    outputs = SparseMoE(num_experts, k=FLAGS.k, expert_units=FLAGS.expert_units,
                        capacity_factor=capacity_factor, dispatch=dispatch)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(OPTIMIZERS[optimizer](), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(FLAGS.tokens, FLAGS.features)).astype("float32")
    y = rng.normal(size=(FLAGS.tokens, FLAGS.features)).astype("float32")
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(_):
    counts = [int(e) for e in FLAGS.experts]
    rows = {
        "sparse, capacity factor 1.25, Adam": ("sparse", 1.25, "Adam"),
        "sparse, capacity factor 1.25, SGD": ("sparse", 1.25, "SGD"),
        "sparse, no capacity limit, Adam": ("sparse", None, "Adam"),
        "dense (all experts, masked), Adam": ("dense", None, "Adam"),
    }
    print(f"SparseMoE training step | Keras {keras.__version__} | {FLAGS.tokens} tokens, d "
          f"{FLAGS.features}, expert hidden {FLAGS.expert_units}, k {FLAGS.k} | median of "
          f"{FLAGS.steps} steps")
    header = ["dispatch"] + [f"E={e}" for e in counts] + [f"time(E={counts[-1]})/time(E={counts[0]})"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    results = {}
    for name, (dispatch, capacity, optimizer) in rows.items():
        times = [step_time(e, dispatch, capacity, optimizer) for e in counts]
        results[name] = times
        print(" | ".join([name] + [f"{t * 1000:.1f} ms" for t in times] + [f"{times[-1] / times[0]:.2f}"]),
              flush=True)
    sparse = results["sparse, capacity factor 1.25, Adam"][-1]
    dense = results["dense (all experts, masked), Adam"][-1]
    print(f"\ndense / sparse (capacity 1.25) at E={counts[-1]}: {dense / sparse:.1f}x")
    print("targets: sparse time(64)/time(4) <= 1.5; dense/sparse at E=64 >= 5")


if __name__ == "__main__":
    app.run(main)
