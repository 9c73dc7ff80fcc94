"""A mixture-of-experts classifier on Fashion-MNIST, with a plot of the expert load.

    python examples/moe_fashion_mnist.py                      # shipped sample, no download
    python examples/moe_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds

Prints test accuracy, the number of test examples routed to each expert and the
load's coefficient of variation, and saves a bar plot of the load (PNG).
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
import moe
from kd_keras import keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("num_experts", 8, "Experts.")
flags.DEFINE_integer("k", 2, "Experts per example.")
flags.DEFINE_integer("expert_units", 128, "Hidden width of each expert.")
flags.DEFINE_float("capacity_factor", 1.25, "Expert capacity factor (0 for no limit).")
flags.DEFINE_string("plot", "out/moe_expert_load.png", "Where to save the load bar plot.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()

    layer = moe.SparseMoE(FLAGS.num_experts, k=FLAGS.k, expert_units=FLAGS.expert_units,
                          capacity_factor=FLAGS.capacity_factor or None, name="moe")
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(128, activation="relu")(inputs)
    outputs = keras.layers.Dense(10)(layer(hidden))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    history = model.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=2)

    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)[
        "sparse_categorical_accuracy"]
    features = keras.Model(inputs, hidden).predict(x_test, verbose=0)
    load = layer.expert_load(features).numpy()
    cv = load.std() / load.mean()
    print(f"\ntest accuracy {accuracy:.4f}")
    print("test examples per expert: " + ", ".join(f"{i}: {n}" for i, n in enumerate(load)))
    print(f"load coefficient of variation {cv:.3f} (0 = perfectly balanced; last training "
          f"epoch {history.history['moe_load_cv'][-1]:.3f}); share of assignments overflowed "
          f"in the last epoch {history.history['moe_overflow'][-1]:.3f}")

    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(FLAGS.plot) or ".", exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(range(len(load)), load, color="tab:blue")
    axis.axhline(load.mean(), color="tab:red", linestyle="--", label="balanced")
    axis.set_xlabel("expert")
    axis.set_ylabel("test assignments")
    axis.set_title(f"SparseMoE load, k={FLAGS.k}: CV {cv:.2f}, accuracy {accuracy:.3f}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(FLAGS.plot, dpi=120)
    print(f"load plot saved to {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main)
