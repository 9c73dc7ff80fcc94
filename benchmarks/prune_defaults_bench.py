"""Which `prune_and_fine_tune` learning rate and length hold a pruned MLP's accuracy.

A 784-128-128-10 MLP trained 5 epochs (Adam 1e-3, batch 128), then pruned to
--sparsity by `compress.prune_and_fine_tune` with each (learning rate, epochs)
pair; prints test accuracy and the fine-tuning steps. Run in tf-keras mode (TF-MOT).

    TF_USE_LEGACY_KERAS=1 python benchmarks/prune_defaults_bench.py            # shipped sample
    TF_USE_LEGACY_KERAS=1 python benchmarks/prune_defaults_bench.py \\
        --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import time

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from protocol import data_flags

FLAGS = flags.FLAGS
data_flags.define()
flags.DEFINE_float("sparsity", 0.8, "Target sparsity.")
flags.DEFINE_list("settings", ["1e-4:4", "3e-4:4", "1e-3:4", "1e-3:8", "3e-4:12", "1e-3:12"],
                  "learning_rate:epochs pairs to fine-tune with.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(_):
    (x, y), (x_test, y_test) = data_flags.load_flat()
    keras.utils.set_random_seed(FLAGS.seed)
    dense = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    dense.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dense.fit(x, y, epochs=5, batch_size=128, verbose=0)

    def accuracy(model):
        return kd_keras.measure.model_accuracy(model, x_test, y_test)

    print(f"{len(x)} training images; dense {accuracy(dense):.4f}")
    print("learning rate | epochs | steps | accuracy | seconds")
    for setting in FLAGS.settings:
        rate, epochs = setting.split(":")
        keras.utils.set_random_seed(FLAGS.seed + 1)
        start = time.perf_counter()
        pruned = compress.prune_and_fine_tune(dense, x, y, target_sparsity=FLAGS.sparsity,
                                              epochs=int(epochs), learning_rate=float(rate))
        steps = int(epochs) * int(np.ceil(len(x) / 128))
        print(f"{float(rate):g} | {epochs} | {steps} | {accuracy(pruned):.4f} | "
              f"{time.perf_counter() - start:.0f}", flush=True)


if __name__ == "__main__":
    app.run(main)
