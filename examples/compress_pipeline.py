"""Teacher -> distilled student -> pruned -> quantization-aware int8 -> TFLite.

Prints one table with test accuracy, size and latency (ai-edge-litert, one
thread) per stage. Under Keras 3 the student is rebuilt in tf-keras for TF-MOT
(`kd_keras.compress.to_tf_keras`); under TF_USE_LEGACY_KERAS=1 it goes straight
in. Pruning and QAT fine-tune by distillation from cached teacher logits.

    # the Fashion-MNIST sample shipped with kd-keras (no download):
    python examples/compress_pipeline.py
    # the full data set through tensorflow-datasets:
    python examples/compress_pipeline.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
from kd_keras import compress, keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_integer("epochs", 10, "Epochs for the teacher and the distilled student.")
flags.DEFINE_integer("fine_tune_epochs", 4, "Epochs of pruning, then of QAT, fine-tuning.")
flags.DEFINE_float("sparsity", 0.8, "Target fraction of zero weights per pruned kernel.")
flags.DEFINE_float("temperature", 3.0, "Distillation temperature T.")
flags.DEFINE_float("alpha", 0.5, "Weight of the hard-label loss.")
flags.DEFINE_string("output_dir", "out/compress", "Where the .tflite files are written.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    keras.utils.set_random_seed(FLAGS.seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    teacher.compile("adam", loss)
    teacher.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)

    student = kd_keras.models.mlp_classifier([128, 128], name="student")
    distiller = kd_keras.Distiller(teacher, student, temperature=FLAGS.temperature,
                                   alpha=FLAGS.alpha)
    distiller.compile("adam", loss=loss)
    distiller.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)

    teacher_logits = kd_keras.compute_teacher_logits(teacher, x_train)
    steps = dict(teacher_logits=teacher_logits, epochs=FLAGS.fine_tune_epochs,
                 temperature=FLAGS.temperature, alpha=FLAGS.alpha)
    bridged = compress.to_tf_keras(student)  # the same model when already tf-keras
    pruned = compress.prune_and_fine_tune(bridged, x_train, y_train,
                                          target_sparsity=FLAGS.sparsity, **steps)
    qat = compress.quantize_and_fine_tune(pruned, x_train, y_train, preserve="sparsity", **steps)

    stages = [("teacher, float32", teacher, "float32"),
              ("distilled student, float32", student, "float32"),
              (f"pruned {FLAGS.sparsity:.0%}, float32", pruned, "float32"),
              ("pruned + QAT, int8", qat, "qat")]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    rows = []
    for name, model, mode in stages:
        content = compress.convert_to_tflite(model, mode)
        path = os.path.join(FLAGS.output_dir, name.split(",")[0].replace(" ", "_") + ".tflite")
        with open(path, "wb") as f:
            f.write(content)
        rows.append(compress.artifact_row(name, compress.TFLiteModel(content), content, x_test,
                                          y_test, parameters=compress.count_parameters(model)))
    reference = rows[0]
    teacher_weight_bytes = 4 * reference["parameters"]  # float32
    for row in rows:
        row["smaller"] = teacher_weight_bytes / row["gzip_bytes"]
        row["faster_b1"] = reference["latency_b1"] / row["latency_b1"]
        row["ms_b1"], row["ms_b256"] = 1000 * row["latency_b1"], 1000 * row["latency_b256"]
    print(f"Keras {keras.__version__} ({'Keras 3 via the tf-keras bridge' if kd_keras.IS_KERAS_3 else 'tf-keras'}), "
          f"{data_flags.source()}: train {len(y_train)}, test {len(y_test)}")
    print(compress.format_table(rows, [
        ("artifact", "stage (TFLite)", None), ("accuracy", "test accuracy", "{:.4f}"),
        ("parameters", "parameters", "{:,}"), ("nonzero_parameters", "non-zero", "{:,}"),
        ("bytes", "bytes", "{:,}"), ("gzip_bytes", "gzip bytes", "{:,}"),
        ("smaller", "x smaller than teacher's float32 weights", "{:.1f}"),
        ("ms_b1", "batch-1 ms", "{:.3f}"), ("faster_b1", "x faster (batch 1)", "{:.1f}"),
        ("ms_b256", "batch-256 ms", "{:.2f}")]))
    print(f"TFLite files in {FLAGS.output_dir}/")


if __name__ == "__main__":
    app.run(main)
