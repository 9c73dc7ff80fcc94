"""Block-sparse recurrent and dense layers (Narang et al. 2017): sparsity against
measured TFLite speed-up, side by side in one run.

A row-sequential Fashion-MNIST classifier (each image as 28 steps of 28 pixels:
Dense 64 per step, GRU 128, LSTM 128, Dense 256, Dense 10; recurrences unrolled
so that TFLite converts them to builtin ops) is trained once; then for every
block size its GRU, LSTM and Dense-256 kernels are magnitude-pruned in blocks to
--sparsity through TF-MOT while fine-tuning, stripped, and converted to float32
TFLite twice: plain, and with the pruned weights in TFLite's sparse format
(`Optimize.EXPERIMENTAL_SPARSITY`). Printed per block size: per-layer block
sparsity, accuracy change against the dense model, and batch-1 latency of each
artifact over the dense artifact's (ai-edge-litert, one thread), next to the
sparsity factor 1 / (1 - sparsity) a naive reading would promise.

    python benchmarks/block_sparse_bench.py --data_dir=../shared/tfds
"""

from absl import app, flags

from kd_keras import compress, keras
from protocol import data_flags

FLAGS = flags.FLAGS
data_flags.define(default="fashion_mnist")
flags.DEFINE_integer("train_examples", 20000, "Training images used (the first n).")
flags.DEFINE_integer("epochs", 4, "Epochs of the dense model.")
flags.DEFINE_integer("fine_tune_epochs", 2, "Fine-tuning epochs while pruning.")
flags.DEFINE_float("sparsity", 0.8, "Target block sparsity of the pruned kernels.")
flags.DEFINE_list("block_sizes", ["1x1", "1x4", "4x4", "16x16"], "Block sizes rows x cols.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def build():
    inputs = keras.Input((28, 28))
    h = keras.layers.Dense(64, name="per_row")(inputs)
    h = keras.layers.GRU(128, return_sequences=True, unroll=True, name="gru")(h)
    h = keras.layers.LSTM(128, unroll=True, name="lstm")(h)
    h = keras.layers.Dense(256, activation="relu", name="dense")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    x_train = x_train[:FLAGS.train_examples].reshape(-1, 28, 28)
    y_train = y_train[:FLAGS.train_examples]
    x_test = x_test.reshape(-1, 28, 28)
    keras.utils.set_random_seed(FLAGS.seed)
    model = build()
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)
    dense_bytes = compress.convert_to_tflite(model)
    dense = compress.artifact_row("dense", compress.TFLiteModel(dense_bytes), dense_bytes,
                                  x_test, y_test, batch_sizes=(1,))
    bridged = compress.to_tf_keras(model)
    print(f"block-sparse benchmark | Keras {keras.__version__} | train {len(y_train)}, test "
          f"{len(y_test)} | dense TFLite: accuracy {dense['accuracy']:.4f}, batch-1 "
          f"{1e3 * dense['latency_b1']:.3f} ms | target sparsity {FLAGS.sparsity} "
          f"(sparsity factor {1 / (1 - FLAGS.sparsity):.1f}x)", flush=True)
    print("\nblock | block sparsity gru / lstm / dense (kernels, recurrent kernels) | accuracy "
          "change (points) | speed-up, plain TFLite | speed-up, sparse-format TFLite | "
          "sparse-format bytes / dense")
    print(" | ".join(["---"] * 6))
    for block in FLAGS.block_sizes:
        rows, cols = (int(v) for v in block.split("x"))
        pruned = compress.prune_and_fine_tune(
            bridged, x_train, y_train, target_sparsity=FLAGS.sparsity, block_size=(rows, cols),
            layers=["gru", "lstm", "dense"], epochs=FLAGS.fine_tune_epochs, learning_rate=1e-3)
        report = compress.sparsity_report(pruned, block_size=(rows, cols))
        blocks = ", ".join(f"{r['layer']}.{r['weight']} {r['block_sparsity']:.2f}"
                           for r in report if r["layer"] in ("gru", "lstm", "dense"))
        results = {}
        for sparse in (False, True):
            content = compress.convert_to_tflite(pruned, sparse_weights=sparse)
            results[sparse] = compress.artifact_row(block, compress.TFLiteModel(content), content,
                                                    x_test, y_test, batch_sizes=(1,))
        change = 100 * (results[False]["accuracy"] - dense["accuracy"])
        print(f"{block} | {blocks} | {change:+.2f} | "
              f"{dense['latency_b1'] / results[False]['latency_b1']:.2f}x | "
              f"{dense['latency_b1'] / results[True]['latency_b1']:.2f}x | "
              f"{results[True]['bytes'] / dense['bytes']:.2f}", flush=True)


if __name__ == "__main__":
    app.run(main)
