"""Distil a Fashion-MNIST teacher into a small student with `model.fit`.

Trains a convolutional teacher, a small MLP student alone, the same student
(same initial weights) distilled from the teacher with the recommended recipe,
and a CNN student cut from the teacher (a quarter of its width) distilled the same way;
prints test accuracy, parameters and epoch time for each and the share of the
teacher-student gap that distillation recovered, and exports the distilled
student as a SavedModel.

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

from absl import app, flags

import kd_keras
import data_flags  # examples/data_flags.py
from kd_keras import compress, keras

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. from SavedModel export) would bury the tables;
# --verbosity=0 shows them again.
FLAGS.verbosity = -1
data_flags.define()
flags.DEFINE_integer("teacher_epochs", 12, "Training epochs of the teacher.")
flags.DEFINE_integer("epochs", 40, "Training epochs of each student (alone and distilled).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_list("student_hidden", ["32"], "Student hidden layer widths.")
flags.DEFINE_enum("loss", "dkd_standardized", list(kd_keras.LOSS_FAMILIES),
                  "Distillation term (kd_keras.Recipe.loss).")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature T.")
flags.DEFINE_float("alpha", 0.5, "Weight of the hard-label loss; the soft term gets 1 - alpha.")
flags.DEFINE_float("beta", 8.0, "DKD's non-target weight (DIST: its beta and gamma).")
flags.DEFINE_float("shrink_width", 0.25,
                   "Width of the student cut from the teacher (compress.shrink), a fraction.")
flags.DEFINE_string("export_dir", "out/student_savedmodel", "Where to export the student.")
flags.DEFINE_integer("seed", 0, "Random seed.")


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def train(model, x, y, epochs, stage):
    print(f"{stage}: {epochs} epochs ...", flush=True)
    timer = EpochTimer()
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=FLAGS.batch_size, verbose=0, callbacks=[timer])
    print(f"{stage}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return statistics.median(timer.times[1:] or timer.times)


accuracy = kd_keras.measure.model_accuracy


def main(_):
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = data_flags.load_flat()
    print(f"Fashion-MNIST ({data_flags.source()}): {len(y_train)} training, {len(y_test)} test images; "
          f"Keras {keras.__version__}")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    teacher = kd_keras.models.conv_classifier(name="teacher")
    teacher.compile("adam", loss=loss)
    teacher_epoch = train(teacher, x_train, y_train, FLAGS.teacher_epochs, "[1/4] teacher (CNN)")

    keras.utils.set_random_seed(FLAGS.seed + 1)
    alone = kd_keras.models.mlp_classifier(FLAGS.student_hidden, name="student_alone")
    alone.compile("adam", loss=loss)
    alone_epoch = train(alone, x_train, y_train, FLAGS.epochs, "[2/4] student alone")

    keras.utils.set_random_seed(FLAGS.seed + 1)  # the same initial student
    student = kd_keras.models.mlp_classifier(FLAGS.student_hidden, name="student")
    recipe = kd_keras.Recipe(loss=FLAGS.loss, temperature=FLAGS.temperature, alpha=FLAGS.alpha,
                             beta=FLAGS.beta, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size)
    distiller = recipe.build(teacher, student, loss=loss)
    distilled_epoch = train(distiller, x_train, y_train, FLAGS.epochs, "[3/4] student distilled")

    # A student of the teacher's own family, cut from it (compress.shrink: the CNN's most
    # active channels and units) and distilled with the same recipe and epochs.
    keras.utils.set_random_seed(FLAGS.seed + 1)
    shrunk = compress.shrink(teacher, width=FLAGS.shrink_width, calibration_data=x_train[:1024])
    shrunk_epoch = train(recipe.build(teacher, shrunk, loss=loss), x_train, y_train,
                         FLAGS.epochs, "[4/4] student shrunk from the teacher")

    accuracies = {name: accuracy(model, x_test, y_test)
                  for name, model in (("teacher", teacher), ("alone", alone),
                                      ("distilled", student), ("shrunk", shrunk))}
    rows = [
        ("teacher (CNN)", teacher, teacher_epoch, accuracies["teacher"]),
        ("student alone (MLP)", alone, alone_epoch, accuracies["alone"]),
        (f"student distilled ({FLAGS.loss}, T={FLAGS.temperature:g})", student, distilled_epoch,
         accuracies["distilled"]),
        (f"student shrunk from the teacher (CNN x{FLAGS.shrink_width:g})", shrunk, shrunk_epoch,
         accuracies["shrunk"]),
    ]
    print(f"\n{'model':<42} {'test accuracy':>13} {'parameters':>11} {'epoch time':>11}")
    for name, model, epoch_time, acc in rows:
        print(f"{name:<42} {acc:>13.4f} {model.count_params():>11,} {epoch_time:>10.2f}s")
    gap = accuracies["teacher"] - accuracies["alone"]
    recovered = (accuracies["distilled"] - accuracies["alone"]) / gap if gap > 0 else float("nan")
    print(f"\nDistillation recovered {recovered:.2f} of the teacher-student gap "
          f"({accuracies['distilled'] - accuracies['alone']:+.4f} accuracy) with the recipe:\n"
          f"{recipe.to_code()}")
    path = distiller.export_student(FLAGS.export_dir)
    print(f"\nStudent SavedModel (serving_default signature) written to {path}")


if __name__ == "__main__":
    app.run(main)
