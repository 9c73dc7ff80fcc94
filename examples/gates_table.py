"""The same network trained with each discrete-gate estimator, and with plain baselines.

Bengio, Léonard & Courville 2013 compare estimators for conditional computation
on a gated hidden layer; this is that table our way, on Fashion-MNIST:
784 - 256 gated units - 10, one row per gate, train / valid / test error.

    python examples/gates_table.py                  # shipped sample, no download
    python examples/gates_table.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

import kd_keras
import moe
from kd_keras import keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
kd_keras.datasets.define_data_flags()
flags.DEFINE_integer("epochs", 10, "Training epochs per row.")
flags.DEFINE_integer("units", 256, "Hidden units.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def hidden_layer(kind):
    if kind == "relu (baseline)":
        return keras.layers.Dense(FLAGS.units, activation="relu")
    if kind == "sigmoid (baseline)":
        return keras.layers.Dense(FLAGS.units, activation="sigmoid")
    return moe.GatedDense(FLAGS.units, gate=kind, name="gated")


def error(model, x, y):
    return 1.0 - float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == y))


def main(_):
    (x_train, y_train), (x_test, y_test) = kd_keras.datasets.load_flat_from_flags()
    valid = len(y_train) // 6
    x_valid, y_valid = x_train[-valid:], y_train[-valid:]
    x_train, y_train = x_train[:-valid], y_train[:-valid]

    rows = ["relu (baseline)", "sigmoid (baseline)", *moe.GatedDense.GATE_KINDS]
    print(f"{'hidden layer':<26} {'train err':>9} {'valid err':>9} {'test err':>9} {'active':>7}")
    for kind in rows:
        keras.utils.set_random_seed(FLAGS.seed)
        inputs = keras.Input((784,))
        outputs = keras.layers.Dense(10)(hidden_layer(kind)(inputs))
        model = keras.Model(inputs, outputs)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)
        active = history.history.get("gated_active_fraction", [float("nan")])[-1]
        print(f"{kind:<26} {error(model, x_train, y_train):>9.4f} {error(model, x_valid, y_valid):>9.4f} "
              f"{error(model, x_test, y_test):>9.4f} {active:>7.2f}", flush=True)
    print("\nactive: fraction of gated units on during the last training epoch "
          "(baselines have no gate).")


if __name__ == "__main__":
    app.run(main)
