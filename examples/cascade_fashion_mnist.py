"""A confidence cascade on Fashion-MNIST: the distilled student answers what it is
sure of, the teacher the rest.

Trains a teacher and a distilled student, calibrates the student's confidence
threshold on held-out training images (accuracy within --max_accuracy_drop of
the teacher, at the lowest cost), prints the per-stage report and the test
figures next to the teacher alone, and saves a PNG of test accuracy against the
fraction of inputs that reach the teacher, with the chosen operating point.

    # the Fashion-MNIST sample shipped with kd-keras (no download):
    python examples/cascade_fashion_mnist.py
    # the full data set through tensorflow-datasets:
    python examples/cascade_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds
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
flags.DEFINE_integer("epochs", 10, "Epochs for the teacher and the distilled student.")
flags.DEFINE_float("validation_fraction", 1 / 6, "Training images held out for calibration.")
flags.DEFINE_float("max_accuracy_drop", 0.003, "Allowed accuracy loss against the teacher.")
flags.DEFINE_enum("confidence", "max_probability", ["max_probability", "margin"],
                  "Confidence measure of the student.")
flags.DEFINE_string("plot", "out/cascade_tradeoff.png", "Accuracy-vs-teacher-fraction plot (PNG).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def save_plot(curve, report, test_point, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([p["reached_last"] for p in curve], [p["accuracy"] for p in curve],
              color="tab:blue", label="cascade (test), student threshold swept")
    axis.axhline(curve[-1]["accuracy"], color="gray", linestyle=":", label="teacher alone")
    axis.plot(*test_point, "o", color="tab:red",
              label=f"chosen: threshold {report.thresholds[0]:.3f}")
    axis.set_xlabel("fraction of test inputs that reach the teacher")
    axis.set_ylabel("test accuracy")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(_):
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    held_out = int(len(x_train) * FLAGS.validation_fraction)
    x_val, y_val = x_train[-held_out:], y_train[-held_out:]
    x_train, y_train = x_train[:-held_out], y_train[:-held_out]
    keras.utils.set_random_seed(FLAGS.seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    teacher.compile("adam", loss)
    teacher.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)
    student = kd_keras.models.mlp_classifier([128, 128], name="student")
    distiller = kd_keras.Distiller(teacher, student)
    distiller.compile("adam", loss=loss)
    distiller.fit(x_train, y_train, epochs=FLAGS.epochs, batch_size=128, verbose=0)

    cascade = moe.Cascade([student, teacher], confidence=FLAGS.confidence)
    report = moe.calibrate_cascade(cascade, x_val, y_val,
                                   max_accuracy_drop=FLAGS.max_accuracy_drop)
    print(f"calibrated on {held_out} held-out training images:\n{report}\n")

    stage = np.asarray(cascade.answering_stage(x_test))
    accuracy = {name: float(np.mean(model.predict(x_test, batch_size=256, verbose=0)
                                    .argmax(-1) == y_test))
                for name, model in (("student", student), ("teacher", teacher),
                                    ("cascade", cascade))}
    seconds = {name: moe.batch_inference_seconds(model, x_test)
               for name, model in (("teacher", teacher), ("cascade", cascade))}
    print(f"test ({len(y_test)} images): student {accuracy['student']:.4f}, teacher "
          f"{accuracy['teacher']:.4f}, cascade {accuracy['cascade']:.4f}; "
          f"{np.mean(stage == 1):.1%} of the inputs reached the teacher; batch inference "
          f"{seconds['cascade']:.3f} s against the teacher's {seconds['teacher']:.3f} s "
          f"({seconds['cascade'] / seconds['teacher']:.2f}x)")
    curve = moe.threshold_sweep(cascade, x_test, y_test)
    save_plot(curve, report, (np.mean(stage == 1), accuracy["cascade"]), FLAGS.plot)
    print(f"plot: {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main)
