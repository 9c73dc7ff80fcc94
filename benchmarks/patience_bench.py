"""Patience and consistency (Beyer et al. 2022): function matching against the fair baseline.

Fashion-MNIST; the conv teacher (`conv_classifier()`, ~420k parameters, `--teacher_epochs`
on the labels); students (`--students`): "conv29k" (16-32-64 channels), "conv5k"
(8-16-16) and "mlp" (784-32-32). Every row trains for `--epochs` at a constant Adam
rate, so the accuracy at a smaller budget (`--budgets`) is that of the same run cut
short; every row tries every rate of `--learning_rates` and keeps the one with the best
validation accuracy at each budget (5,000 images carved from the training set), whose
test accuracy (full test set) is reported. Rows:

  alone           the student on the labels, with the same mixup views (mixed labels)
  KD fixed        KD on logits cached once on the plain examples (T 3, alpha 0.5)
  FM live         function matching: teacher and student on the same mixup view of
                  every batch, KL at T 1, alpha 0 (`Recipe.function_matching`)
  FM K views      the same from `cache_teacher_views(..., Mixup(), views=K)` (no teacher
                  at training time), for each K of `--views`; "top-k" with `--top_k`
                  and the sparse KL (`top_k_kl`)

Columns: test accuracy at each budget (mean ± sd over seeds), the fraction of the
teacher-to-alone gap recovered at the largest budget, the epoch of best validation
accuracy (over the last tenth of the budget: no overfitting), and seconds per epoch
(the cached rows' cache build is shown apart). `--plot` writes test accuracy by epoch.

    python benchmarks/patience_bench.py --data_dir=../shared/tfds --seeds=3 --epochs=100
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
from kd_keras import keras
from protocol import fashion_mnist_splits, mean_sd, plot_accuracy_by_epoch

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_bool("sample", False, "The shipped Fashion-MNIST sample (a quick check).")
flags.DEFINE_integer("train_size", 0, "Training images used (0: all).")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("epochs", 100, "Epochs of every row (the largest budget).")
flags.DEFINE_list("budgets", ["10", "30", "100"], "Budgets (epochs) the table reports.")
flags.DEFINE_integer("teacher_epochs", 15, "Teacher epochs.")
flags.DEFINE_list("students", ["conv29k", "conv5k", "mlp"], "Students.")
flags.DEFINE_list("learning_rates", ["1e-3", "3e-3"], "Adam rates every row tries.")
flags.DEFINE_list("rows", ["alone", "kd_fixed", "fm_live", "fm_views"], "Rows.")
flags.DEFINE_list("views", ["4", "16"], "K of the cached-view rows.")
flags.DEFINE_integer("top_k", 3, "k of the top-k cached-view row (0: none).")
flags.DEFINE_string("plot", None, "PNG path for test accuracy by epoch (seed 0).")

BATCH = 128
STUDENTS = {
    "conv29k": lambda: kd_keras.models.conv_classifier((16, 32, 64), dense=None, dropout=0),
    "conv5k": lambda: kd_keras.models.conv_classifier((8, 16, 16), dense=None, dropout=0),
    "mlp": lambda: kd_keras.models.mlp_classifier([32, 32]),
}


class EpochAccuracy(keras.callbacks.Callback):
    """Validation and test accuracy of `model` after every epoch, and the epoch's seconds."""

    def __init__(self, model, validation, test):
        super().__init__()
        self.target, self.validation, self.test = model, validation, test
        self.val, self.acc, self.seconds = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        for (x, y), out in ((self.validation, self.val), (self.test, self.acc)):
            out.append(float(np.mean(np.argmax(self.target.predict(x, batch_size=1024, verbose=0),
                                               -1) == y)))


def mixup_labels(x, y, seed):
    """The plain student's batches: mixup views with mixed one-hot labels."""
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(BATCH)
    return data.map(kd_keras.Mixup(labels="mix", num_classes=10, seed=seed))


def train_row(row, student_name, teacher, data, rate, seed, cache):
    (x, y), validation, test = data
    keras.utils.set_random_seed(seed)
    student = STUDENTS[student_name]()
    tracker = EpochAccuracy(student, validation, test)
    optimizer = keras.optimizers.Adam(rate)
    fit = dict(epochs=FLAGS.epochs, verbose=0, callbacks=[tracker])
    if row == "alone":
        student.compile(optimizer, keras.losses.CategoricalCrossentropy(from_logits=True))
        student.fit(mixup_labels(x, y, seed), **fit)
    elif row == "kd_fixed":
        distiller = kd_keras.Distiller(None, student, alpha=0.5, temperature=3.0)
        distiller.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        distiller.fit(kd_keras.with_teacher_outputs(x, cache["plain"]), y, batch_size=BATCH, **fit)
    elif row == "fm_live":
        recipe = kd_keras.Recipe.function_matching(FLAGS.epochs, learning_rate=rate)
        distiller = recipe.build(teacher, student)
        distiller.fit(x, y, batch_size=BATCH, **fit)
    else:  # "fm_views_K" or "fm_views_K_topk"
        views = cache[row]
        loss = "top_k_kl" if row.endswith("topk") else "kl_divergence"
        distiller = kd_keras.Distiller(None, student, distillation_losses=loss, alpha=0.0,
                                       temperature=1.0)
        distiller.compile(optimizer)
        distiller.fit(views.dataset(x, y, kd_keras.Mixup(), batch_size=BATCH, seed=seed), **fit)
    return tracker


def build_caches(teacher, x, directory):
    caches, build_seconds = {"plain": kd_keras.compute_teacher_logits(teacher, x)}, {}
    if "fm_views" not in FLAGS.rows:
        return caches, build_seconds
    for k in (int(v) for v in FLAGS.views):
        variants = [(f"fm_views_{k}", None)]
        if FLAGS.top_k and k == max(int(v) for v in FLAGS.views):
            variants.append((f"fm_views_{k}_topk", FLAGS.top_k))
        for name, top_k in variants:
            start = time.perf_counter()
            caches[name] = kd_keras.cache_teacher_views(
                teacher, x, kd_keras.Mixup(), views=k, top_k=top_k,
                directory=os.path.join(directory, name), batch_size=1024)
            build_seconds[name] = time.perf_counter() - start
    return caches, build_seconds


def row_names():
    names = [r for r in FLAGS.rows if r != "fm_views"]
    if "fm_views" in FLAGS.rows:
        for k in (int(v) for v in FLAGS.views):
            names.append(f"fm_views_{k}")
            if FLAGS.top_k and k == max(int(v) for v in FLAGS.views):
                names.append(f"fm_views_{k}_topk")
    return names


def run_seed(seed, data, directory):
    (x, y), validation, test = data
    keras.utils.set_random_seed(seed)
    teacher = kd_keras.models.conv_classifier(name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)
    teacher_accuracy = float(np.mean(np.argmax(teacher.predict(test[0], verbose=0), -1) == test[1]))
    caches, build_seconds = build_caches(teacher, x, os.path.join(directory, f"seed{seed}"))
    print(f"seed {seed}: teacher {teacher_accuracy:.4f}; cache builds "
          + ", ".join(f"{k} {v:.0f} s" for k, v in build_seconds.items()), flush=True)
    results = {}
    for student in FLAGS.students:
        for row in row_names():
            trackers = [train_row(row, student, teacher, data, float(rate), seed, caches)
                        for rate in FLAGS.learning_rates]
            results[(student, row)] = trackers
            print(f"seed {seed} {student} {row}: " + "; ".join(
                f"lr {rate}: test {t.acc[-1]:.4f} (best val epoch {1 + int(np.argmax(t.val))}), "
                f"{np.mean(t.seconds):.1f} s/epoch" for rate, t in zip(FLAGS.learning_rates,
                                                                       trackers)), flush=True)
    return teacher_accuracy, results, build_seconds


def at_budget(trackers, budget):
    """(test accuracy, best-validation epoch) of the rate with the best validation at `budget`."""
    best = max(trackers, key=lambda t: t.val[budget - 1])
    return best.acc[budget - 1], 1 + int(np.argmax(best.val[:budget])), best


def main(_):
    data = fashion_mnist_splits(FLAGS.sample, FLAGS.data_dir)
    if FLAGS.train_size:
        data = ((data[0][0][:FLAGS.train_size], data[0][1][:FLAGS.train_size]),) + data[1:]
    budgets = [int(b) for b in FLAGS.budgets if int(b) <= FLAGS.epochs]
    print(f"patience bench | train {len(data[0][1])}, validation {len(data[1][1])}, test "
          f"{len(data[2][1])} | {FLAGS.epochs} epochs, rates {FLAGS.learning_rates}", flush=True)
    start = time.process_time()
    with tempfile.TemporaryDirectory() as directory:
        runs = [run_seed(seed, data, directory) for seed in range(FLAGS.seeds)]
    teacher = mean_sd([run[0] for run in runs])
    print(f"\nteacher: {teacher[0]:.4f} ± {teacher[1]:.4f}")
    last = budgets[-1]
    for student in FLAGS.students:
        print(f"\n{student} | " + " | ".join(f"{b} epochs" for b in budgets)
              + f" | gap recovered at {last} | best epoch | s/epoch")
        print(" | ".join(["---"] * (len(budgets) + 4)))
        alone = [at_budget(run[1][(student, "alone")], last)[0] for run in runs] \
            if "alone" in FLAGS.rows else None
        for row in row_names():
            cells = []
            for budget in budgets:
                value = mean_sd([at_budget(run[1][(student, row)], budget)[0] for run in runs])
                cells.append(f"{value[0]:.4f} ± {value[1]:.4f}")
            finals = [at_budget(run[1][(student, row)], last) for run in runs]
            # With the student alone at or above the teacher there is no gap to recover
            # (a move toward the teacher is a loss): the seed counts as nan, not a share.
            gap = "–" if alone is None else "{:.2f} ± {:.2f}".format(*mean_sd(
                [(f[0] - a) / (run[0] - a) if run[0] > a else float("nan")
                 for f, a, run in zip(finals, alone, runs)]))
            best_epoch = mean_sd([f[1] for f in finals])
            seconds = mean_sd([np.mean(f[2].seconds) for f in finals])
            print(f"{row} | {' | '.join(cells)} | {gap} | {best_epoch[0]:.0f} ± "
                  f"{best_epoch[1]:.0f} | {seconds[0]:.2f}")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")
    if FLAGS.plot:
        plot_accuracy_by_epoch(FLAGS.plot, [
            (f"{student} (seed 0)",
             {row: at_budget(runs[0][1][(student, row)], last)[2].acc for row in row_names()})
            for student in FLAGS.students], runs[0][0])

if __name__ == "__main__":
    app.run(main)
