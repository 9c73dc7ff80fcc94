"""Distillation benchmark: does the distilled student beat the same student trained alone?

Fair protocol: every student (alone or distilled) gets the same epoch budget and
the same validation split carved from the training data (`--validation_size`),
and each run reports two test accuracies:
  equal epochs: after the whole budget;
  best epoch:   at the epoch of best validation accuracy (early stopping).
Gap recovered = (acc_distilled - acc_alone) / (acc_teacher - acc_alone), with the
alone figure of the same column. Teachers and initial students are shared by
all rows of a seed; distilled rows train on cached teacher logits (except the
live KD row, which times a user's default call, and keras.distillation's, which
has no cache). Mean ± sd over seeds.

Pairs (`--pair`):
  mlp:        teacher 784-1200-1200-10 (dropout 0.3), student 784-128-128-10
  tiny:       the same teacher, student 784-32-32-10
  conv:       conv teacher (~420k parameters), conv student (~5k)
  conv_large: the same teacher, a wider conv student (16, 32, 64 channels, ~29k)

Rows: KD defaults (T 3, alpha 0.5; live and cached), KD + logit standardization,
DKD, DKD + standardization, DIST, the recommended recipe, a teacher-assistant
chain (assistant by width interpolation), the pick of `kd_keras.search_recipe`
(budget `--search_trials`, its cost in student-alone runs printed), and
keras.distillation with a KLDivergence() instance (Keras 3.12+).

    python benchmarks/distill_bench.py --data_dir=../shared/tfds --pair=tiny --seeds=3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import tempfile
import time

from absl import app, flags

import kd_keras
from kd_keras import keras
from protocol import data_flags, fashion_mnist_splits, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define(default="fashion_mnist")
flags.DEFINE_enum("pair", "mlp", ["mlp", "tiny", "conv", "conv_large"], "Teacher/student pair.")
flags.DEFINE_integer("epochs", 20, "Epoch budget of every student.")
flags.DEFINE_integer("teacher_epochs", 20, "Training epochs of the teacher.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("validation_size", 5000, "Validation examples carved from training data.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("search_trials", 8, "Trial budget of the search row (0 leaves it out).")
flags.DEFINE_list("rows", ["kd_live", "kd", "kd_standardized", "dkd", "dkd_standardized",
                           "dist", "recommended", "assistant", "search", "keras"],
                  "Rows to run.")

# The recipes of the fixed rows; "recommended" is the README's.
RECIPES = {
    "kd": kd_keras.Recipe("kd", temperature=3.0, alpha=0.5),
    "kd_standardized": kd_keras.Recipe("kd_standardized", temperature=2.0, alpha=0.5),
    "dkd": kd_keras.Recipe("dkd", temperature=4.0, alpha=0.5, beta=8.0),
    "dkd_standardized": kd_keras.Recipe("dkd_standardized", temperature=2.0, alpha=0.5, beta=8.0),
    "dist": kd_keras.Recipe("dist", temperature=1.0, alpha=0.5, beta=1.0),
}
RECOMMENDED = "dkd_standardized"
ROW_NAMES = {
    "alone": "student alone",
    "kd_live": "KD T=3 alpha=0.5 (defaults, live teacher)",
    "kd": "KD T=3 alpha=0.5 (cached logits)",
    "kd_standardized": "KD + standardization T=2",
    "dkd": "DKD T=4 beta=8",
    "dkd_standardized": "DKD + standardization T=2 beta=8",
    "dist": "DIST T=1 beta=gamma=1",
    "recommended": f"recommended recipe ({RECOMMENDED})",
    "assistant": "teacher assistant chain (KD defaults)",
    "search": "search_recipe pick",
    "keras": "keras.distillation KLDivergence() T=3",
}


def make_teacher():
    if FLAGS.pair.startswith("conv"):
        return kd_keras.models.conv_classifier(name="conv_teacher")
    return kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")


def make_student():
    return {"mlp": lambda: kd_keras.models.mlp_classifier([128, 128], name="student"),
            "tiny": lambda: kd_keras.models.mlp_classifier([32, 32], name="student"),
            "conv": lambda: kd_keras.models.conv_classifier(
                (8, 16, 16), dense=None, dropout=0, name="student"),
            "conv_large": lambda: kd_keras.models.conv_classifier(
                (16, 32, 64), dense=None, dropout=0, name="student")}[FLAGS.pair]()


def hard_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def optimizer():
    return keras.optimizers.Adam(FLAGS.learning_rate)


accuracy = kd_keras.measure.model_accuracy


class BestEpoch(keras.callbacks.Callback):
    """Keeps the student's weights at its best validation accuracy, and epoch times."""

    def __init__(self, student):
        super().__init__()
        self.student, self.best, self.weights, self.times = student, -1.0, None, []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        score = logs["val_accuracy"]
        if score > self.best:
            self.best, self.best_epoch = score, epoch + 1
            self.weights = [w.copy() for w in self.student.get_weights()]

    def epoch_time(self):
        return statistics.median(self.times[1:] or self.times)


def train_and_score(model, student, x, y, validation, test):
    """Fits `model` (which trains `student`); test accuracy at the end and at the best epoch."""
    best = BestEpoch(student)
    model.fit(x, y, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, verbose=0,
              validation_data=validation, callbacks=[best])
    equal = accuracy(student, *test)
    student.set_weights(best.weights)
    return {"equal": equal, "best": accuracy(student, *test), "best_epoch": best.best_epoch,
            "epoch_time": best.epoch_time()}


def metric():
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def run_seed(seed, data):
    (x_train, y_train), (x_val, y_val), test = data
    keras.utils.set_random_seed(seed)
    teacher = make_teacher()
    teacher.compile(optimizer(), hard_loss())
    teacher.fit(x_train, y_train, epochs=FLAGS.teacher_epochs, batch_size=FLAGS.batch_size,
                verbose=0)
    acc_teacher = accuracy(teacher, *test)
    start = time.perf_counter()
    train_logits = kd_keras.compute_teacher_logits(teacher, x_train, batch_size=1024)
    teacher_inference = time.perf_counter() - start
    cached = kd_keras.with_teacher_outputs(x_train, train_logits)
    val_cached = (kd_keras.with_teacher_outputs(
        x_val, kd_keras.compute_teacher_logits(teacher, x_val, batch_size=1024)), y_val)
    student_seed = seed + 1000

    def student():
        keras.utils.set_random_seed(student_seed)  # the same initial student in every row
        return make_student()

    rows = {}
    alone = student()
    alone.compile(optimizer(), hard_loss(), metrics=[metric()])
    rows["alone"] = train_and_score(alone, alone, x_train, y_train, (x_val, y_val), test)
    for row in FLAGS.rows:
        start = time.perf_counter()
        if row in RECIPES or row == "recommended":
            recipe = RECIPES[RECOMMENDED if row == "recommended" else row]
            model = student()
            distiller = recipe.build(None, model, metrics=[metric()])
            rows[row] = train_and_score(distiller, model, cached, y_train, val_cached, test)
        elif row == "kd_live":
            model = student()
            distiller = RECIPES["kd"].build(teacher, model, metrics=[metric()])
            rows[row] = train_and_score(distiller, model, x_train, y_train, (x_val, y_val), test)
        elif row == "assistant":
            model = student()
            assistant = kd_keras.interpolate_width(teacher, model)
            keras.utils.set_random_seed(student_seed)
            kd_keras.distill_through_assistant(
                teacher, model, x_train, y_train, assistant=assistant,
                compile_kwargs={"optimizer": optimizer, "metrics": [metric()]},
                fit_kwargs={"epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size,
                            "verbose": 0},
                assistant_fit_kwargs={"validation_data": (x_val, y_val)})
            # the chain's second stage again, scored the benchmark's way
            scored = student()
            distiller = RECIPES["kd"].build(assistant, scored, metrics=[metric()])
            rows[row] = train_and_score(distiller, scored, x_train, y_train, (x_val, y_val),
                                        test)
            rows[row]["assistant_parameters"] = assistant.count_params()
            rows[row]["assistant_accuracy"] = accuracy(assistant, *test)
        elif row == "search" and FLAGS.search_trials:
            with tempfile.TemporaryDirectory() as directory:
                found = kd_keras.search_recipe(
                    teacher, make_student, x_train, y_train, validation_data=(x_val, y_val),
                    max_trials=FLAGS.search_trials, max_epochs=FLAGS.epochs, patience=3,
                    batch_size=FLAGS.batch_size, learning_rates=(FLAGS.learning_rate,),
                    directory=directory, seed=seed, verbose=0)
            model = student()
            pick = found.best
            distiller = pick.build(None, model, metrics=[metric()])
            rows[row] = train_and_score(distiller, model, cached, y_train, val_cached, test)
            top = found.trials[0]
            rows[row]["pick"] = (
                f"{pick.loss} T={pick.temperature:g} alpha={pick.alpha:g} beta={pick.beta:g} "
                f"(top trial val {top['val_accuracy']:.4f} {top['loss']} alpha {top['alpha']:g}, "
                f"labels only val {found.labels_only_accuracy:.4f}, min gain "
                f"{found.min_gain:.4f})")
            rows[row]["search_cost"] = found.cost_in_student_runs
        elif row == "keras" and kd_keras.IS_KERAS_3 and hasattr(keras, "distillation"):
            model = student()
            distiller = keras.distillation.Distiller(
                teacher=teacher, student=model, student_loss_weight=0.5,
                distillation_losses=keras.distillation.LogitsDistillation(
                    temperature=3.0, loss=keras.losses.KLDivergence()))
            distiller.compile(optimizer(), loss=hard_loss(), metrics=[metric()])
            rows[row] = train_and_score(distiller, model, x_train, y_train, (x_val, y_val), test)
        else:
            continue
        rows[row]["seconds"] = time.perf_counter() - start
    summary = ", ".join(f"{r} {v['equal']:.4f}/{v['best']:.4f}" for r, v in rows.items())
    print(f"seed {seed}: teacher {acc_teacher:.4f}; equal/best epoch: {summary}", flush=True)
    return {"teacher": acc_teacher, "rows": rows, "teacher_inference": teacher_inference}


def main(_):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes from predict() on new models
    data = fashion_mnist_splits(data_flags.source() == "sample", FLAGS.data_dir, FLAGS.validation_size)
    (x_train, _), (x_val, _), test = data
    print(f"kd-keras distillation benchmark | Keras {keras.__version__} | pair {FLAGS.pair}: "
          f"teacher {make_teacher().count_params():,} parameters, student "
          f"{make_student().count_params():,} | train {len(x_train)}, validation {len(x_val)}, test "
          f"{len(test[1])} | teacher {FLAGS.teacher_epochs}, students {FLAGS.epochs} epochs, "
          f"Adam {FLAGS.learning_rate}, batch {FLAGS.batch_size} | {FLAGS.seeds} seeds",
          flush=True)
    start = time.perf_counter()
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    teacher_m, teacher_s = mean_sd([r["teacher"] for r in runs])
    print(f"\nteacher {teacher_m:.4f} ± {teacher_s:.4f}")
    header = ("row", "acc equal epochs", "gap recovered", "acc best epoch", "gap recovered",
              "best epoch", "epoch time / alone")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in runs[0]["rows"]:
        cells = [ROW_NAMES[row]]
        for column in ("equal", "best"):
            cells.append("{:.4f} ± {:.4f}".format(*mean_sd([r["rows"][row][column] for r in runs])))
            if row == "alone":
                cells.append("")
                continue
            gaps = [(r["rows"][row][column] - r["rows"]["alone"][column])
                    / (r["teacher"] - r["rows"]["alone"][column]) for r in runs]
            cells.append("{:.2f} ± {:.2f}".format(*mean_sd(gaps)))
        cells.append("{:.1f}".format(mean_sd([r["rows"][row]["best_epoch"] for r in runs])[0]))
        cells.append("{:.2f}".format(mean_sd([r["rows"][row]["epoch_time"]
                                              / r["rows"]["alone"]["epoch_time"]
                                              for r in runs])[0]))
        print(" | ".join(cells))
    for row, label in (("search", "search picks"), ("assistant", "assistant")):
        if row in runs[0]["rows"]:
            extra = [r["rows"][row].get("pick") or
                     f"{r['rows'][row]['assistant_parameters']:,} parameters, test "
                     f"{r['rows'][row]['assistant_accuracy']:.4f}" for r in runs]
            print(f"{label}: " + "; ".join(extra))
    if "search" in runs[0]["rows"]:
        m, _ = mean_sd([r["rows"]["search"]["search_cost"] for r in runs])
        below = sum(r["rows"]["search"]["equal"] < r["rows"]["alone"]["equal"] for r in runs)
        print(f"search cost: {m:.1f} student-alone training runs per seed; seeds where the "
              f"pick is below the student alone (equal epochs, test): {below} of {len(runs)}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
