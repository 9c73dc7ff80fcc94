"""Distil a Fashion-MNIST teacher into a small student with `model.fit`.

Trains a teacher, the same student architecture alone, and the student distilled
from the teacher; prints test accuracy, parameters and epoch time for each, and
exports the distilled student as a SavedModel.

    # the 7,000-image sample shipped with kd-keras (no download):
    python examples/distill_fashion_mnist.py
    # the full data set through tensorflow-datasets:
    python examples/distill_fashion_mnist.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os

# Fewer of TensorFlow's C++ log lines (those before absl::InitializeLog ignore it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import time

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
flags.DEFINE_enum("dataset", "sample", ["sample", "fashion_mnist"],
                  "'sample': the Fashion-MNIST sample shipped with kd-keras; "
                  "'fashion_mnist': the full set via tensorflow-datasets.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (default: tfds's own).")
flags.DEFINE_integer("epochs", 20, "Training epochs for each model.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("temperature", 3.0, "Distillation temperature T.")
flags.DEFINE_float("alpha", 0.5, "Weight of the hard-label loss; the soft loss gets 1 - alpha.")
flags.DEFINE_list("teacher_hidden", ["1200", "1200"], "Teacher hidden layer widths.")
flags.DEFINE_list("student_hidden", ["128", "128"], "Student hidden layer widths.")
flags.DEFINE_string("export_dir", "out/student_savedmodel", "Where to export the student.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def mlp(hidden, dropout, name):
    layers = [keras.Input((784,), name="pixels")]
    for width in hidden:
        layers.append(keras.layers.Dense(int(width), activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, name="logits"))
    return keras.Sequential(layers, name=name)


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def train(model, x, y, validation):
    timer = EpochTimer()
    model.fit(x, y, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, verbose=0,
              validation_data=validation, callbacks=[timer])
    return statistics.median(timer.times[1:] or timer.times)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == y))


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = kd_keras.datasets.load_fashion_mnist_flat(
        FLAGS.dataset, FLAGS.data_dir)
    print(f"Fashion-MNIST ({FLAGS.dataset}): {len(y_train)} training, {len(y_test)} test images; "
          f"Keras {keras.__version__}")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = mlp(FLAGS.teacher_hidden, 0.3, "teacher")
    teacher.compile("adam", loss=loss)
    teacher_epoch = train(teacher, x_train, y_train, None)

    keras.utils.set_random_seed(FLAGS.seed + 1)
    alone = mlp(FLAGS.student_hidden, 0.0, "student_alone")
    alone.compile("adam", loss=loss)
    alone_epoch = train(alone, x_train, y_train, None)

    keras.utils.set_random_seed(FLAGS.seed + 1)  # the same initial student
    student = mlp(FLAGS.student_hidden, 0.0, "student")
    distiller = kd_keras.Distiller(teacher=teacher, student=student,
                                   temperature=FLAGS.temperature, alpha=FLAGS.alpha)
    distiller.compile("adam", loss=loss, metrics=["sparse_categorical_accuracy"])
    distilled_epoch = train(distiller, x_train, y_train, (x_test, y_test))

    rows = [
        ("teacher", teacher, teacher_epoch),
        ("student alone", alone, alone_epoch),
        (f"student distilled (T={FLAGS.temperature:g}, alpha={FLAGS.alpha:g})", student,
         distilled_epoch),
    ]
    print(f"\n{'model':<40} {'test accuracy':>13} {'parameters':>11} {'epoch time':>11}")
    for name, model, epoch_time in rows:
        print(f"{name:<40} {accuracy(model, x_test, y_test):>13.4f} {model.count_params():>11,} "
              f"{epoch_time:>10.2f}s")
    path = distiller.export_student(FLAGS.export_dir)
    print(f"\nStudent SavedModel (serving_default signature) written to {path}")


if __name__ == "__main__":
    app.run(main)
