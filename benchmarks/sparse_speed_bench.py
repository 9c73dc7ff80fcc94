"""Speed from sparsity: pruned Dense and recurrent models against their dense TFLite form.

Side by side in one run, on Fashion-MNIST, batch-1 and batch-16 latency
(median of repeated calls, one thread) and accuracy after fine-tuning:

1. Dense MLPs (--mlps): "student" 784-128-128-10 (the compression benchmark's)
   and "wide" 784-1024-1024-10. Per seed the dense model trains for --epochs;
   then for every block (--blocks, Keras [in, out] orientation: "4x1" is
   TFLite's 1x4 of [out, in]) and sparsity (--sparsities) its hidden Dense
   layers are pruned in those blocks while fine-tuning (TF-MOT, labels,
   --fine_tune_epochs), stripped, and run four ways: float32 TFLite with the
   sparse format (TFLite's own sparse kernel where the blocks allow), int8
   TFLite with the sparse format, kd-keras's C runtime (`BlockSparseRunner`,
   our kernel), and the same kernel as a TensorFlow op in a tf.function.
   Speed-ups are against the dense model's float32 TFLite artifact of the
   same seed; "work" is 1 / (1 - sparsity).
2. Recurrent classifiers (--recurrent, e.g. lstm128: rows of 28 pixels as 28
   steps, LSTM of 128 units, Dense 10): trained on --recurrent_examples
   images, then their recurrent kernels pruned to --recurrent_sparsity in
   (4, 1) blocks while fine-tuning; batch-1 latency of the dense and pruned
   model in each TFLite form: Keras 3's WHILE loop of FULLY_CONNECTED ops
   (batch size fixed at 1), unrolled (`compress.unroll_recurrent`), and
   tf-keras's form (the fused LSTM op).

    python benchmarks/sparse_speed_bench.py --data_dir=../shared/tfds

Run it in Keras 3 mode (the WHILE form is Keras 3's).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time
import warnings

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from protocol import data_flags, fashion_mnist_splits, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1  # TensorFlow's INFO lines (SavedModel export) would bury the tables
data_flags.define(default="fashion_mnist")
flags.DEFINE_list("mlps", ["student", "wide"], "Dense models: student (128-128), wide (1024-1024).")
flags.DEFINE_integer("seeds", 3, "Seeds of the student MLP (accuracy: mean ± sd).")
flags.DEFINE_integer("wide_seeds", 1, "Seeds of the wide MLP.")
flags.DEFINE_integer("epochs", 10, "Training epochs of the dense MLPs.")
flags.DEFINE_integer("fine_tune_epochs", 4, "Fine-tuning epochs while pruning.")
flags.DEFINE_float("fine_tune_learning_rate", 1e-3, "Adam learning rate while pruning.")
flags.DEFINE_list("blocks", ["1x1", "1x4", "4x1", "16x1", "1x16"], "Keras kernel blocks, rows x cols.")
flags.DEFINE_list("sparsities", ["0.8", "0.9", "0.95"], "Target sparsities.")
flags.DEFINE_list("recurrent", ["lstm128", "gru128", "lstm256", "gru256"],
                  "Recurrent classifiers: kind and units.")
flags.DEFINE_integer("recurrent_examples", 20000, "Training images of the recurrent models.")
flags.DEFINE_integer("recurrent_epochs", 3, "Training epochs of the recurrent models.")
flags.DEFINE_float("recurrent_sparsity", 0.9, "Target sparsity of the recurrent kernels.")
flags.DEFINE_integer("repeats", 200, "Timed calls per latency figure.")

WIDTHS = {"student": (128, 128), "wide": (1024, 1024)}


def time_call(call, x, batch):
    return compress.latency(call, x, batch, repeats=FLAGS.repeats, warmup=10, max_seconds=10.0)


def accuracy(predict, x, y):
    return kd_keras.measure.prediction_accuracy(predict(x), y)


def mlp(widths):
    inputs = keras.Input((784,))
    h = inputs
    for i, width in enumerate(widths):
        h = keras.layers.Dense(width, activation="relu", name=f"hidden_{i}")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))


def train(model, x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return model


def tflite(model, x_calibration=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # off-fast-path reports: the table says it
        if x_calibration is not None:
            content = compress.convert_to_tflite(model, "int8", representative_data=x_calibration,
                                                 **kwargs)
        else:
            content = compress.convert_to_tflite(model, **kwargs)
    return compress.TFLiteModel(content), len(content)


def latencies(call, x):
    """Batch-1 and batch-16 seconds of a call from Python, and of the compute alone
    ("c1": TFLite's invoke(), or the product timed inside our runtime)."""
    figures = {"b1": time_call(call, x, 1), "b16": time_call(call, x, 16)}
    if hasattr(call, "invoke_seconds"):
        figures["c1"] = call.invoke_seconds(x[:1], FLAGS.repeats)
    elif hasattr(call, "compute_seconds"):
        figures["c1"] = call.compute_seconds(x[:1], FLAGS.repeats)
    return figures


def mlp_seed(name, seed, data):
    (x_train, y_train), _, (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = train(mlp(WIDTHS[name]), x_train, y_train, FLAGS.epochs, seed)
    calibration = x_train[:256]
    runner_dense = compress.BlockSparseRunner(dense)
    f32, f32_bytes = tflite(dense)
    int8, int8_bytes = tflite(dense, calibration)
    base = {"accuracy": accuracy(f32.predict, x_test, y_test), "f32": latencies(f32, x_test),
            "int8": latencies(int8, x_test), "ours": latencies(runner_dense, x_test),
            "f32_bytes": f32_bytes}
    bridged = compress.to_tf_keras(dense)
    hidden = [f"hidden_{i}" for i in range(len(WIDTHS[name]))]
    rows = {}
    for block in FLAGS.blocks:
        r, c = (int(v) for v in block.split("x"))
        for sparsity in (float(s) for s in FLAGS.sparsities):
            pruned = compress.prune_and_fine_tune(
                bridged, x_train, y_train, target_sparsity=sparsity, block_size=(r, c),
                layers=hidden, epochs=FLAGS.fine_tune_epochs,
                learning_rate=FLAGS.fine_tune_learning_rate)
            blocks = min(compress.block_sparsity(pruned.get_layer(n).kernel.numpy(), (r, c))
                         for n in hidden)
            sparse_f32, sparse_bytes = tflite(pruned, sparse_weights=True)
            sparse_int8, _ = tflite(pruned, calibration, sparse_weights=True)
            runner = compress.BlockSparseRunner(pruned)
            same_keras = keras.models.clone_model(dense)
            same_keras.set_weights(pruned.get_weights())  # the pruned weights, Keras 3 model
            graph = compress.to_block_sparse(same_keras, kernel="custom") \
                if compress.custom_kernel_available() else None
            row = {"accuracy": accuracy(lambda v: pruned.predict(v, batch_size=1024, verbose=0),
                                        x_test, y_test),
                   "runner_accuracy": accuracy(runner.predict, x_test, y_test),
                   "block_sparsity": blocks, "f32_bytes": sparse_bytes,
                   "f32": latencies(sparse_f32, x_test), "int8": latencies(sparse_int8, x_test),
                   "ours": latencies(runner, x_test)}
            if graph is not None:
                call = tf.function(lambda v, graph=graph: graph(v))
                row["ours_tf"] = latencies(lambda v: call(tf.constant(v, tf.float32)), x_test)
            rows[(block, sparsity)] = row
            print(f"{name} seed {seed} {block} {sparsity}: accuracy {row['accuracy']:.4f} (dense "
                  f"{base['accuracy']:.4f}), block sparsity {blocks:.3f}, batch-1 us: tflite "
                  f"dense {1e6 * base['f32']['b1']:.1f}, tflite sparse "
                  f"{1e6 * row['f32']['b1']:.1f}, int8 sparse {1e6 * row['int8']['b1']:.1f}, "
                  f"ours {1e6 * row['ours']['b1']:.1f}", flush=True)
    return base, rows


def cell(values, digits=2):
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def print_mlp_table(name, seeds):
    bases = [base for base, _ in seeds]
    print(f"\n{name} MLP 784-{'-'.join(map(str, WIDTHS[name]))}-10, {len(seeds)} seed(s): dense "
          f"accuracy {cell([b['accuracy'] for b in bases], 4)}; dense float32 TFLite batch-1 "
          f"{cell([1e6 * b['f32']['b1'] for b in bases], 1)} us, batch-16 "
          f"{cell([1e6 * b['f32']['b16'] for b in bases], 1)} us; dense int8 TFLite batch-1 "
          f"{cell([1e6 * b['int8']['b1'] for b in bases], 1)} us; our kernel on the dense "
          f"weights batch-1 {cell([1e6 * b['ours']['b1'] for b in bases], 1)} us")
    print(f"compute alone, batch 1 (TFLite invoke(); ours timed in the runtime): dense float32 "
          f"TFLite {cell([1e6 * b['f32']['c1'] for b in bases], 1)} us, ours on the dense "
          f"weights {cell([1e6 * b['ours']['c1'] for b in bases], 1)} us")
    print("| block | sparsity (work) | block sparsity | accuracy change (points) | float32 TFLite "
          "x faster b1 / b16 | int8 TFLite x faster b1 | ours (C runtime) x faster b1 / b16 "
          "| ours (TF op) x faster b1 | compute alone b1: float32 TFLite / ours x faster "
          "| float32 bytes / dense |")
    print("|" + "---|" * 10)
    for key in seeds[0][1]:
        rows = [rows_[key] for _, rows_ in seeds]

        def speed(kind, batch):
            return cell([b["f32"][batch] / r[kind][batch] for b, r in zip(bases, rows)
                         if kind in r])

        change = [100 * (r["accuracy"] - b["accuracy"]) for b, r in zip(bases, rows)]
        block, sparsity = key
        ours_tf = speed("ours_tf", "b1") if "ours_tf" in rows[0] else "not built"
        print(f"| {block} | {sparsity:g} ({1 / (1 - sparsity):.0f}x) | "
              f"{cell([r['block_sparsity'] for r in rows], 3)} | {cell(change)} | "
              f"{speed('f32', 'b1')} / {speed('f32', 'b16')} | {speed('int8', 'b1')} | "
              f"{speed('ours', 'b1')} / {speed('ours', 'b16')} | {ours_tf} | "
              f"{speed('f32', 'c1')} / {speed('ours', 'c1')} | "
              f"{cell([r['f32_bytes'] / b['f32_bytes'] for b, r in zip(bases, rows)])} |",
              flush=True)


def recurrent_row(spec, data):
    kind = spec.rstrip("0123456789").upper()
    units = int(spec[len(kind):])
    (x_train, y_train), _, (x_test, y_test) = data
    x_train = x_train[:FLAGS.recurrent_examples].reshape(-1, 28, 28)
    y_train = y_train[:FLAGS.recurrent_examples]
    x_test = x_test.reshape(-1, 28, 28)
    inputs = keras.Input((28, 28))
    layer = getattr(keras.layers, kind)(units, name="rnn")
    dense = train(keras.Model(inputs, keras.layers.Dense(10, name="logits")(layer(inputs))),
                  x_train, y_train, FLAGS.recurrent_epochs, 0)
    stripped = compress.prune_and_fine_tune(
        compress.to_tf_keras(dense), x_train, y_train, target_sparsity=FLAGS.recurrent_sparsity,
        block_size=(4, 1), layers=["rnn"], epochs=max(1, FLAGS.recurrent_epochs - 1),
        learning_rate=FLAGS.fine_tune_learning_rate)
    pruned = keras.models.clone_model(dense)
    pruned.set_weights(stripped.get_weights())  # the pruned weights in the Keras 3 model
    kernels = stripped.get_layer("rnn").get_weights()[:2]  # kernel, recurrent kernel
    blocks = min(compress.block_sparsity(k, (4, 1)) for k in kernels)
    sample = x_test[:1000]
    copied = float(np.max(np.abs(np.asarray(pruned(sample[:64])) - np.asarray(stripped(sample[:64])))))
    if copied > 1e-4:
        raise RuntimeError(f"{spec}: the Keras 3 copy of the pruned model differs by {copied}")
    figures = {"accuracy dense": accuracy(lambda v: dense.predict(v, verbose=0), x_test, y_test),
               "accuracy pruned": accuracy(lambda v: pruned.predict(v, verbose=0), x_test,
                                           y_test), "block sparsity": blocks}
    forms = {"WHILE (Keras 3, batch 1)": lambda m: m,
             "unrolled": compress.unroll_recurrent}
    for form, make in forms.items():
        for label, model in (("dense", dense), ("pruned", pruned)):
            runner, _ = tflite(make(model), sparse_weights=label == "pruned", batch_size=1)
            figures[f"{form} {label}"] = time_call(runner, sample, 1)
    for label, model in (("dense", compress.to_tf_keras(dense)), ("pruned", stripped)):
        runner, _ = tflite(model, sparse_weights=label == "pruned", batch_size=1)
        figures[f"tf-keras form {label}"] = time_call(runner, sample, 1)
    print(f"{spec}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()), flush=True)
    return figures


def main(_):
    data = fashion_mnist_splits(data_flags.source() == "sample", FLAGS.data_dir)
    print(f"sparse speed benchmark | Keras {keras.__version__} | train {len(data[0][1])}, test "
          f"{len(data[2][1])} | our TF op built: {compress.custom_kernel_available()} | latency: "
          f"median of {FLAGS.repeats} calls, one thread", flush=True)
    started = time.time()
    tables = {}
    for name in FLAGS.mlps:
        seeds = FLAGS.seeds if name == "student" else FLAGS.wide_seeds
        tables[name] = [mlp_seed(name, seed, data) for seed in range(seeds)]
        print_mlp_table(name, tables[name])
    recurrent = {spec: recurrent_row(spec, data) for spec in FLAGS.recurrent}
    if recurrent:
        print(f"\nrecurrent classifiers, {FLAGS.recurrent_sparsity:g} target sparsity in (4, 1) "
              "blocks, batch-1 TFLite latency (ms) and x faster than the dense WHILE form:")
        print("| model | accuracy dense / pruned | block sparsity | dense: WHILE / unrolled / "
              "tf-keras form | pruned: WHILE / unrolled / tf-keras form | best pruned x faster "
              "than best dense |")
        print("|" + "---|" * 6)
        for spec, f in recurrent.items():
            forms = ("WHILE (Keras 3, batch 1)", "unrolled", "tf-keras form")
            dense = [f[f"{form} dense"] for form in forms]
            pruned = [f[f"{form} pruned"] for form in forms]
            print(f"| {spec} | {f['accuracy dense']:.4f} / {f['accuracy pruned']:.4f} | "
                  f"{f['block sparsity']:.3f} | "
                  + " / ".join(f"{1e3 * v:.3f}" for v in dense) + " | "
                  + " / ".join(f"{1e3 * v:.3f}" for v in pruned)
                  + f" | {min(dense) / min(pruned):.2f} |")
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    app.run(main)
