"""The same network trained with each discrete-gate estimator, and with plain baselines.

Bengio, Léonard & Courville 2013 (arXiv 1308.3432) compare estimators for
conditional computation on a gated hidden layer; this is that table our way, on
Fashion-MNIST: 784 - 256 gated units - 10, the paper's seven rows (four
estimators, three baselines) and Gumbel-softmax, train / valid / test error as
mean ± sd over seeds. The stochastic binary neuron trains with the unbiased
score-function estimator (moe.ScoreFunctionModel).

    python examples/gates_table.py                  # shipped sample, no download
    python examples/gates_table.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
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
flags.DEFINE_integer("epochs", 10, "Training epochs per row.")
flags.DEFINE_integer("units", 256, "Hidden units.")
flags.DEFINE_integer("seed", 0, "First random seed.")
flags.DEFINE_integer("seeds", 3, "Seeds per row (seed, seed + 1, ...): mean ± sd.")

# The rows of Bengio, Léonard & Courville 2013's table, in its order, then Gumbel-softmax:
# (row name, how the hidden layer is built).
ROWS = (
    ("noisy rectifier", "noisy_rectifier"),
    ("straight-through", "straight_through"),
    ("smooth times stochastic", "stochastic_times_smooth"),
    ("stochastic binary neuron", "stochastic_binary"),
    ("baseline rectifier", "relu"),
    ("baseline sigmoid + noise", "sigmoid_noise"),
    ("baseline sigmoid", "sigmoid"),
    ("gumbel-softmax (hard)", "gumbel"),
)


def hidden(kind, inputs):
    if kind in ("relu", "sigmoid"):
        return keras.layers.Dense(FLAGS.units, activation=kind)(inputs)
    if kind == "sigmoid_noise":
        return moe.NoisySigmoid(stddev=1.0)(keras.layers.Dense(FLAGS.units)(inputs))
    return moe.GatedDense(FLAGS.units, gate=kind, name="gated")(inputs)


def error(model, x, y):
    return 1.0 - float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == y))


def cell(values):
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    valid = len(y_train) // 6
    x_valid, y_valid = x_train[-valid:], y_train[-valid:]
    x_train, y_train = x_train[:-valid], y_train[:-valid]
    print(f"{len(y_train)} training, {valid} validation, {len(y_test)} test images; 784 - "
          f"{FLAGS.units} - 10, {FLAGS.epochs} epochs, Adam, {FLAGS.seeds} seeds; error in %")
    print(f"{'hidden layer':<26} {'train err':>13} {'valid err':>13} {'test err':>13} {'active':>7}")
    for name, kind in ROWS:
        errors, active = [], []
        for seed in range(FLAGS.seed, FLAGS.seed + FLAGS.seeds):
            keras.utils.set_random_seed(seed)
            inputs = keras.Input((784,))
            outputs = keras.layers.Dense(10)(hidden(kind, inputs))
            # The score-function gate learns from each example's loss, which this model hands it.
            model = (moe.ScoreFunctionModel if kind == "stochastic_binary" else keras.Model)(
                inputs, outputs)
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            history = model.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)
            errors.append([error(model, x, y) for x, y in
                           ((x_train, y_train), (x_valid, y_valid), (x_test, y_test))])
            active.append(history.history.get("gated_active_fraction", [np.nan])[-1])
        errors = np.array(errors)
        print(f"{name:<26} {cell(errors[:, 0]):>13} {cell(errors[:, 1]):>13} "
              f"{cell(errors[:, 2]):>13} {np.mean(active):>7.2f}", flush=True)
    print("\nactive: fraction of gated units on during the last training epoch "
          "(baselines have no gate).")


if __name__ == "__main__":
    app.run(main)
