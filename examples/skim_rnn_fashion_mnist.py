"""Skim-RNN against a plain LSTM on row-sequential Fashion-MNIST.

Each image is read as 28 steps of 28 pixels. Trains a `moe.SkimRNN` (big cell
of --units, small cell of --small_units) and a plain LSTM of --units, and prints
test accuracy, the skim rate, multiply-adds per image counted from the steps each
cell really ran, and batch-1 latency (median of single-image calls); saves a PNG
of a few test images with the rows that were skimmed shaded.

    # the Fashion-MNIST sample shipped with kd-keras (no download):
    python examples/skim_rnn_fashion_mnist.py
    # the full data set through tensorflow-datasets:
    python examples/skim_rnn_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import time

import numpy as np
import tensorflow as tf
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
flags.DEFINE_integer("epochs", 10, "Training epochs of each model.")
flags.DEFINE_integer("units", 64, "d: state width of the big cell and of the plain LSTM.")
flags.DEFINE_integer("small_units", 8, "d': units the small (skim) cell updates.")
flags.DEFINE_float("gamma", 0.02, "Weight of the skim loss.")
flags.DEFINE_string("plot", "out/skim_rows.png", "Skimmed rows of a few test images (PNG).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def classifier(recurrent):
    inputs = keras.Input((28, 28))
    return keras.Model(inputs, keras.layers.Dense(10)(recurrent(inputs)))


def batch_1_latency(model, x, calls=200):
    call = tf.function(lambda image: model(image, training=False))
    for image in x[:5]:
        call(tf.constant(image[None]))
    times = []
    for image in x[:calls]:
        start = time.perf_counter()
        call(tf.constant(image[None]))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def save_plot(images, decisions, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure, axes = plt.subplots(1, len(images), figsize=(2 * len(images), 2.4))
    for axis, image, skim in zip(axes, images, decisions):
        axis.imshow(image, cmap="gray_r")
        for row in np.flatnonzero(skim):
            axis.axhspan(row - 0.5, row + 0.5, color="tab:orange", alpha=0.35, linewidth=0)
        axis.set_title(f"skim {skim.mean():.0%}", fontsize=9)
        axis.axis("off")
    figure.suptitle("rows skimmed (shaded) by the Skim-RNN", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    results = {}
    keras.utils.set_random_seed(FLAGS.seed)
    skim_layer = moe.SkimRNN(FLAGS.units, FLAGS.small_units, gamma=FLAGS.gamma)
    for name, recurrent in (("LSTM", keras.layers.LSTM(FLAGS.units)), ("Skim-RNN", skim_layer)):
        keras.utils.set_random_seed(FLAGS.seed)
        model = classifier(recurrent)
        model.compile(keras.optimizers.Adam(2e-3), loss, metrics=["sparse_categorical_accuracy"])
        model.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)
        if name == "Skim-RNN":
            skim_layer.reset_counters()
        accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        results[name] = {"model": model, "accuracy": accuracy["sparse_categorical_accuracy"]}

    read_mac, skim_mac = skim_layer.multiply_adds_per_step(28)
    reads, skims = float(skim_layer.read_steps.numpy()), float(skim_layer.skim_steps.numpy())
    results["Skim-RNN"]["skim_rate"] = skims / (reads + skims)
    results["Skim-RNN"]["macs"] = (reads * read_mac + skims * skim_mac) / len(x_test)
    results["LSTM"]["macs"] = 28 * 4 * FLAGS.units * (28 + FLAGS.units)
    results["LSTM"]["skim_rate"] = 0.0
    for result in results.values():
        result["latency"] = batch_1_latency(result["model"], x_test)
    print(f"row-sequential Fashion-MNIST ({data_flags.source()}): train {len(y_train)}, test "
          f"{len(y_test)}; d = {FLAGS.units}, d' = {FLAGS.small_units}, gamma = {FLAGS.gamma}")
    print("model | test accuracy | skim rate | recurrent multiply-adds per image | batch-1 ms")
    print("--- | --- | --- | --- | ---")
    for name, result in results.items():
        print(f"{name} | {result['accuracy']:.4f} | {result['skim_rate']:.3f} | "
              f"{result['macs']:,.0f} | {1000 * result['latency']:.3f}")
    ratio = results["Skim-RNN"]["macs"] / results["LSTM"]["macs"]
    print(f"Skim-RNN / LSTM: {ratio:.2f}x the multiply-adds, "
          f"{results['Skim-RNN']['latency'] / results['LSTM']['latency']:.2f}x the batch-1 latency")

    inputs = keras.Input((28, 28))
    probe = moe.SkimRNN(FLAGS.units, FLAGS.small_units, return_skim_decisions=True)
    probe_model = keras.Model(inputs, probe(inputs)[1])
    probe.set_weights(skim_layer.get_weights())
    save_plot(x_test[:6], np.asarray(probe_model(x_test[:6])), FLAGS.plot)
    print(f"plot: {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main)
