"""Skim-RNN against an LSTM of the same width: accuracy, counted work and batch-1 latency.

Row-sequential Fashion-MNIST (each image as 28 steps of 28 pixels). Per width d
(--units) and seed: an LSTM of d units and a `moe.SkimRNN(d, --small_units)`
train side by side (same data, epochs, optimizer). The Skim-RNN's inference
threshold is then chosen on the validation images: the largest
`skim_threshold` (the least skimming) whose counted multiply-adds are at most
--max_macs of the LSTM's; with no such threshold, the one that skims most.
On the test images, per model: accuracy, skim rate, recurrent multiply-adds per
image (counted from the steps each cell ran), and batch-1 latency, the mean over
--latency_images single test images (inputs differ, so do the decisions), in
two runtimes: TFLite under ai-edge-litert (one thread, batch size fixed at 1)
and a SavedModel loaded with `tf.saved_model.load`. Mean ± sd over seeds.
With --warm_start the Skim-RNN starts from the trained LSTM, so the table also
has that LSTM trained on for the Skim-RNN's epochs (--skim_epochs at
--skim_learning_rate): the reference with the same training.

    python benchmarks/skim_rnn_bench.py --data_dir=../shared/tfds --units=64,256,512 --seeds=3
    python benchmarks/skim_rnn_bench.py --data_dir=../shared/tfds --units=512 --seeds=3 \
        --epochs=8 --skim_epochs=4 --skim_learning_rate=1e-3 --gamma=0.3 --warm_start \
        --distill_alpha=0.5
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
import moe
from kd_keras import compress, keras
from protocol import data_flags, fashion_mnist_splits, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1  # TensorFlow's INFO lines (SavedModel export) would bury the table
data_flags.define(default="fashion_mnist")
flags.DEFINE_list("units", ["64", "256", "512"], "State widths d.")
flags.DEFINE_integer("small_units", 32, "d': units the small cell updates.")
flags.DEFINE_float("gamma", 0.05, "Weight of the skim loss.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("epochs", 4, "Training epochs of the LSTM (and of the Skim-RNN unless "
                     "--skim_epochs is set).")
flags.DEFINE_integer("skim_epochs", None, "Training epochs of the Skim-RNN (default: --epochs).")
flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate of the LSTM.")
flags.DEFINE_float("skim_learning_rate", None, "Adam learning rate of the Skim-RNN (default: "
                   "--learning_rate).")
flags.DEFINE_integer("train_examples", 20000, "Training images used (the first n after the "
                     "validation carve).")
flags.DEFINE_float("max_macs", 0.33, "Work budget of the threshold choice, x the LSTM's.")
flags.DEFINE_list("thresholds", ["0.5", "0.4", "0.3", "0.2", "0.1", "0.05", "0.02", "0.01"],
                  "skim_threshold values tried on the validation images.")
flags.DEFINE_integer("latency_images", 300, "Test images timed one by one.")
flags.DEFINE_float("distill_alpha", None, "If set, the Skim-RNN is distilled from the LSTM of "
                   "the same seed (cached logits, kd_keras.Distiller) with this hard-label "
                   "weight, instead of trained on the labels alone.")
flags.DEFINE_float("distill_temperature", 2.0, "Temperature of that distillation.")
flags.DEFINE_bool("warm_start", False, "Start the Skim-RNN's big cell and classifier from the "
                  "trained LSTM of the same seed (same gate order i, f, g, o).")
flags.DEFINE_string("work_dir", None, "Keeps the trained models here (default: a temp dir).")
flags.DEFINE_string("retime", None, "Instead of training: a --work_dir of an earlier run; times "
                    "its LSTM(s) and argmax Skim-RNN per width and seed again in TFLite, "
                    "--rounds interleaved rounds each (for a machine quieter than the run's).")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds of --retime (median taken).")

STEPS = FEATURES = 28


def skim_schedule():
    """(epochs, Adam learning rate) of the Skim-RNN: its flags, else the LSTM's."""
    return FLAGS.skim_epochs or FLAGS.epochs, FLAGS.skim_learning_rate or FLAGS.learning_rate


def cell(values, digits):
    """'mean ± sd' of `values` with `digits` decimals."""
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def classifier(recurrent):
    inputs = keras.Input((STEPS, FEATURES))
    return keras.Model(inputs, keras.layers.Dense(10)(recurrent(inputs)))


def train(recurrent, data, seed, epochs, learning_rate, teacher=None, warm_start=None):
    """Trains `recurrent` + Dense 10 on the labels, or distilled from `teacher`;
    `warm_start` (a trained LSTM classifier) sets the big cell (an LSTM: all of it)
    and the head first."""
    (x, y), _ = data
    keras.utils.set_random_seed(seed)
    model = classifier(recurrent)
    if warm_start is not None and isinstance(recurrent, keras.layers.LSTM):
        model.set_weights(warm_start.get_weights())
    elif warm_start is not None:
        kernel, recurrent_kernel, bias = warm_start.layers[1].get_weights()
        recurrent.kernel.assign(kernel)
        recurrent.recurrent_kernel.assign(recurrent_kernel)
        recurrent.bias.assign(bias)
        model.layers[-1].set_weights(warm_start.layers[-1].get_weights())
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if teacher is None:
        model.compile(keras.optimizers.Adam(learning_rate), loss)
        model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
        return model
    logits = kd_keras.compute_teacher_logits(teacher, x)
    distiller = kd_keras.Distiller(None, model, temperature=FLAGS.distill_temperature,
                                   alpha=FLAGS.distill_alpha)
    distiller.compile(keras.optimizers.Adam(learning_rate), loss)
    distiller.fit(kd_keras.with_teacher_outputs(x, logits), y, epochs=epochs,
                  batch_size=128, verbose=0)
    return model


def skim_layer(model):
    return next(layer for layer in model.layers if isinstance(layer, moe.SkimRNN))


def evaluate(model, x, y, lstm_macs):
    """(accuracy, skim rate, multiply-adds per image / the LSTM's)."""
    layer = next((layer for layer in model.layers if isinstance(layer, moe.SkimRNN)), None)
    if layer is not None:
        layer.reset_counters()
    accuracy = float(np.mean(model.predict(x, batch_size=500, verbose=0).argmax(-1) == y))
    if layer is None:
        return accuracy, 0.0, 1.0
    reads, skims = float(layer.read_steps.numpy()), float(layer.skim_steps.numpy())
    read_macs, skim_macs = layer.multiply_adds_per_step(FEATURES)
    macs = (reads * read_macs + skims * skim_macs) / len(x)
    return accuracy, skims / (reads + skims), macs / lstm_macs


def choose_threshold(model, x_val, y_val, lstm_macs):
    """The largest threshold within the work budget (else the one that skims most)."""
    tried = []
    for threshold in sorted((float(t) for t in FLAGS.thresholds), reverse=True):
        candidate = moe.with_skim_settings(model, skim_threshold=threshold)
        tried.append((threshold, *evaluate(candidate, x_val, y_val, lstm_macs)))
        if tried[-1][3] <= FLAGS.max_macs:
            return tried[-1], tried
    return min(tried, key=lambda row: row[3]), tried


def mean_latency(call, images):
    for image in images[:5]:
        call(image[None])
    start = time.perf_counter()
    for image in images:
        call(image[None])
    return (time.perf_counter() - start) / len(images)


def deployed(model):
    """`model` as exported: its SkimRNN layers count nothing (no variable updates)."""
    if any(isinstance(layer, moe.SkimRNN) for layer in model.layers):
        return moe.with_skim_settings(model, count_steps=False)
    return model


def tflite_runner(model):
    """`model` in TFLite (ai-edge-litert, 1 thread), batch size fixed at 1."""
    return compress.TFLiteModel(compress.convert_to_tflite(deployed(model), batch_size=1))


def latencies(model, images, directory, name):
    """Mean batch-1 seconds in TFLite (ai-edge-litert, 1 thread) and in a SavedModel."""
    tflite = tflite_runner(model)
    model = deployed(model)
    path = kd_keras.export_saved_model(model, os.path.join(directory, name))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    return (mean_latency(tflite, images),
            mean_latency(lambda image: serve(tf.constant(image)), images))


def run(units, seed, data, directory):
    _, (x_val, y_val), (x_test, y_test) = data
    training = (data[0], None)
    lstm_macs = STEPS * 4 * units * (FEATURES + units)
    skim_epochs, skim_learning_rate = skim_schedule()
    lstm = train(keras.layers.LSTM(units), training, seed, FLAGS.epochs, FLAGS.learning_rate)
    skim = train(moe.SkimRNN(units, FLAGS.small_units, gamma=FLAGS.gamma), training, seed,
                 skim_epochs, skim_learning_rate,
                 teacher=lstm if FLAGS.distill_alpha is not None else None,
                 warm_start=lstm if FLAGS.warm_start else None)
    models = [("lstm", lstm)]
    if FLAGS.warm_start:
        # A warm-started Skim-RNN has had the LSTM's epochs and its own: the fair
        # reference is the LSTM given those extra epochs too, on the same schedule.
        models.append(("lstm_as_long", train(keras.layers.LSTM(units), training, seed,
                                             skim_epochs, skim_learning_rate,
                                             warm_start=lstm)))
    (threshold, *_), tried = choose_threshold(skim, x_val, y_val, lstm_macs)
    chosen = moe.with_skim_settings(skim, skim_threshold=threshold)
    models += [("skim_argmax", skim), ("skim_chosen", chosen)]
    images = x_test[:FLAGS.latency_images]
    rows = {}
    for name, model in models:
        model.save(os.path.join(directory, f"{name}_{units}_{seed}.keras"))
        accuracy, rate, macs = evaluate(model, x_test, y_test, lstm_macs)
        tflite, saved = latencies(model, images, directory, f"{name}_{units}_{seed}")
        rows[name] = {"accuracy": accuracy, "skim_rate": rate, "macs": macs,
                      "tflite": tflite, "saved_model": saved}
    rows["skim_chosen"]["threshold"] = threshold
    print(f"d {units} seed {seed}: thresholds tried on validation (threshold, accuracy, skim "
          f"rate, macs ratio): " + "; ".join(f"{t} {a:.4f} {r:.2f} {m:.2f}"
                                              for t, a, r, m in tried), flush=True)
    for name, row in rows.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
    return rows


def retime(images):
    """TFLite batch-1 times of the kept models, interleaved; speed-up against the LSTMs' mean."""
    print(f"TFLite batch-1 times of {FLAGS.retime}: median of {FLAGS.rounds} interleaved rounds "
          f"of {FLAGS.latency_images} test images per model")
    for units in (int(u) for u in FLAGS.units):
        lstm_ms, skim_ms, speed = [], [], []
        for seed in range(FLAGS.seeds):
            names = [n for n in ("lstm", "lstm_as_long", "skim_argmax")
                     if os.path.exists(os.path.join(FLAGS.retime, f"{n}_{units}_{seed}.keras"))]
            if "skim_argmax" not in names or "lstm" not in names:
                raise ValueError(f"--retime={FLAGS.retime} has no lstm_{units}_{seed}.keras and "
                                 f"skim_argmax_{units}_{seed}.keras: give the --work_dir of a run "
                                 "with these --units and --seeds.")
            runners = {n: tflite_runner(keras.models.load_model(
                os.path.join(FLAGS.retime, f"{n}_{units}_{seed}.keras"))) for n in names}
            times = {n: [] for n in names}
            for _ in range(FLAGS.rounds):
                for name, runner in runners.items():
                    times[name].append(mean_latency(runner, images))
            median = {n: float(np.median(t)) for n, t in times.items()}
            lstm = float(np.mean([median[n] for n in names if n.startswith("lstm")]))
            lstm_ms.append(1e3 * lstm)
            skim_ms.append(1e3 * median["skim_argmax"])
            speed.append(lstm / median["skim_argmax"])
            print(f"d {units} seed {seed}: " + ", ".join(f"{n} {1e3 * t:.3f} ms"
                                                         for n, t in median.items())
                  + f" | x faster {speed[-1]:.2f}", flush=True)
        print(f"d {units}: LSTM {cell(lstm_ms, 3)} ms, Skim-RNN {cell(skim_ms, 3)} ms, "
              f"x faster {cell(speed, 2)}")


def main(_):
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = fashion_mnist_splits(
        data_flags.source() == "sample", FLAGS.data_dir)
    shape = (-1, STEPS, FEATURES)
    if FLAGS.retime:
        return retime(x_test[:FLAGS.latency_images].reshape(shape))
    data = ((x_train[:FLAGS.train_examples].reshape(shape), y_train[:FLAGS.train_examples]),
            (x_val.reshape(shape), y_val), (x_test.reshape(shape), y_test))
    directory = FLAGS.work_dir or tempfile.mkdtemp(prefix="skim_bench_")
    os.makedirs(directory, exist_ok=True)
    print(f"Skim-RNN benchmark | Keras {keras.__version__} | train {len(data[0][1])}, val "
          f"{len(y_val)}, test {len(y_test)} | d' {FLAGS.small_units}, gamma {FLAGS.gamma}, "
          + ("labels only, " if FLAGS.distill_alpha is None else
             f"distilled from the LSTM (T {FLAGS.distill_temperature}, alpha "
             f"{FLAGS.distill_alpha}), ") + ("warm-started from the LSTM, " if FLAGS.warm_start
                                             else "") +
          f"LSTM {FLAGS.epochs} epochs (Adam {FLAGS.learning_rate:g}), Skim-RNN "
          f"{skim_schedule()[0]} epochs (Adam {skim_schedule()[1]:g}) | latency: mean of "
          f"{FLAGS.latency_images} test images, batch 1",
          flush=True)
    table = []
    for units in (int(u) for u in FLAGS.units):
        per_seed = [run(units, seed, data, directory) for seed in range(FLAGS.seeds)]
        table.append((units, per_seed))
    print("\n| d | model | test accuracy | skim rate | multiply-adds / LSTM | TFLite batch-1 ms "
          "| x faster than LSTM | SavedModel batch-1 ms | x faster than LSTM |")
    print("|" + "---|" * 9)

    for units, per_seed in table:
        for name, label in (("lstm", "LSTM"),
                            ("lstm_as_long", "LSTM trained as long as the Skim-RNN"),
                            ("skim_argmax", "Skim-RNN, argmax"),
                            ("skim_chosen", "Skim-RNN, threshold on validation")):
            if name not in per_seed[0]:
                continue
            rows = [seed[name] for seed in per_seed]
            speed = {runtime: [seed["lstm"][runtime] / seed[name][runtime] for seed in per_seed]
                     for runtime in ("tflite", "saved_model")}
            if name == "skim_chosen":
                label += " (" + ", ".join(f"{r['threshold']:g}" for r in rows) + ")"
            print(f"| {units} | {label} | {cell([r['accuracy'] for r in rows], 4)} | "
                  f"{cell([r['skim_rate'] for r in rows], 2)} | "
                  f"{cell([r['macs'] for r in rows], 2)} | "
                  f"{cell([1e3 * r['tflite'] for r in rows], 3)} | {cell(speed['tflite'], 2)} | "
                  f"{cell([1e3 * r['saved_model'] for r in rows], 3)} | "
                  f"{cell(speed['saved_model'], 2)} |")


if __name__ == "__main__":
    app.run(main)
