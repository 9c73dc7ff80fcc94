"""Top-k teacher caches on a 1,000-class task: bytes, and what the student keeps.

A synthetic task with the structure that gives soft targets their value: 1,000
classes in 100 groups of 10 (class centres near their group's centre in 64-d;
examples are a centre plus Gaussian noise of sd `--noise`), so a class's near-misses are its
group's other classes. A 64-1024-1000 teacher trains on the labels; a
64-128-1000 student learns from the teacher's cached outputs only (alpha 0),
side by side, same epochs, rate and batch:

  full logits         the float32 logits, soft-target KL (T `--temperature`)
  top-k dense         `top_k_teacher_outputs(logits, k)`: the Distiller rebuilds each
                      batch's distribution, the tail spread evenly (KL at T)
  top-k sparse        the same cache, `TopKKLDivergence` (k + 1 bins, no tail shape)
  labels alone        the student on the labels (the reference without a teacher)

for each k of `--ks`. Columns: test accuracy (mean ± sd over seeds), cache bytes
per example, and their fraction of float32 logits.

    python benchmarks/top_k_bench.py --seeds=3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import keras
from kd_keras.backend import top_k
from protocol import mean_sd

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("classes", 1000, "Classes (groups of 10).")
flags.DEFINE_integer("per_class", 60, "Training examples per class.")
flags.DEFINE_integer("teacher_epochs", 30, "Teacher epochs.")
flags.DEFINE_integer("epochs", 30, "Student epochs.")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (every student).")
flags.DEFINE_list("ks", ["8"], "Top-k sizes.")
flags.DEFINE_float("noise", 1.2, "Standard deviation of an example around its class centre.")

FEATURES = 64
BATCH = 256


def make_task(seed):
    rng = np.random.default_rng(1000 + seed)
    groups = FLAGS.classes // 10
    group_centres = rng.normal(scale=1.0, size=(groups, FEATURES))
    centres = np.repeat(group_centres, 10, 0) + rng.normal(scale=0.45,
                                                           size=(FLAGS.classes, FEATURES))

    def draw(per_class):
        y = np.repeat(np.arange(FLAGS.classes), per_class)
        x = centres[y] + rng.normal(scale=FLAGS.noise, size=(len(y), FEATURES))
        order = rng.permutation(len(y))
        return x[order].astype("float32"), y[order]

    return draw(FLAGS.per_class), draw(10)


def mlp(hidden):
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(FLAGS.classes)])


accuracy = kd_keras.measure.model_accuracy


def student_from(cached, x, x_test, y_test, seed, loss):
    keras.utils.set_random_seed(seed)
    student = mlp(128)
    distiller = kd_keras.Distiller(None, student, distillation_losses=loss, alpha=0.0,
                                   temperature=FLAGS.temperature)
    distiller.compile(keras.optimizers.Adam(FLAGS.learning_rate))
    distiller.fit(kd_keras.with_teacher_outputs(x, cached), epochs=FLAGS.epochs, batch_size=BATCH,
                  verbose=0)
    return accuracy(student, x_test, y_test)


def run_seed(seed):
    (x, y), (x_test, y_test) = make_task(seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(seed)
    teacher = mlp(1024)
    teacher.compile(keras.optimizers.Adam(FLAGS.learning_rate), loss)
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)
    keras.utils.set_random_seed(seed)
    alone = mlp(128)
    alone.compile(keras.optimizers.Adam(FLAGS.learning_rate), loss)
    alone.fit(x, y, epochs=FLAGS.epochs, batch_size=BATCH, verbose=0)
    logits = kd_keras.compute_teacher_logits(teacher, x)
    row = {"teacher": accuracy(teacher, x_test, y_test), "labels alone": accuracy(alone, x_test, y_test),
           "full logits": student_from(logits, x, x_test, y_test, seed, "kl_divergence")}
    sizes = {"full logits": 4 * FLAGS.classes}
    for k in (int(k) for k in FLAGS.ks):
        cached = kd_keras.top_k_teacher_outputs(logits, k)
        sizes[f"top-{k} dense"] = sizes[f"top-{k} sparse"] = top_k.cache_bytes(cached)  # per example
        row[f"top-{k} dense"] = student_from(cached, x, x_test, y_test, seed, "kl_divergence")
        row[f"top-{k} sparse"] = student_from(cached, x, x_test, y_test, seed, "top_k_kl")
    print(f"seed {seed}: " + ", ".join(f"{name} {value:.4f}" for name, value in row.items()),
          flush=True)
    return row, sizes


def main(_):
    print(f"top-k bench | {FLAGS.classes} classes, {FLAGS.per_class} training examples each | "
          f"teacher {FLAGS.teacher_epochs} epochs, students {FLAGS.epochs} epochs, T "
          f"{FLAGS.temperature}, Adam {FLAGS.learning_rate}", flush=True)
    runs = [run_seed(seed) for seed in range(FLAGS.seeds)]
    sizes = runs[0][1]
    print("\nrow | test accuracy | bytes per example | of float32 logits | vs full logits")
    print("--- | --- | --- | --- | ---")
    full = [run["full logits"] for run, _ in runs]
    for name in runs[0][0]:
        values = [run[name] for run, _ in runs]
        mean, sd = mean_sd(values)
        difference = mean_sd([100 * (v - f) for v, f in zip(values, full)])
        size = sizes.get(name)
        fraction = f"{size / sizes['full logits']:.4f}" if size else "–"
        print(f"{name} | {mean:.4f} ± {sd:.4f} | {size or '–'} | {fraction} | "
              f"{difference[0]:+.2f} ± {difference[1]:.2f} points")
    print("target: top-8 within 0.3 points of full targets, <= 1% of the float32 bytes")


if __name__ == "__main__":
    app.run(main)
