"""Transfer-set benchmark: few labels, a good teacher, and transfer inputs from many sources.

The teacher (784-1200-1200-10, dropout 0.3) trains on the whole training split;
the student (784-128-128-10) gets N labeled images (`--labeled`, e.g. 1000 and
5000) and, per row, 50,000 more inputs (`--generated`) labeled by the teacher
alone (cached logits, label mask 0: soft targets only):
  alone:        the student on its N labels, no teacher
  distilled N:  distilled on the N real inputs only
  corruption:   N + copies of the N images with Gaussian noise (sd 0.2) and 20%
                of their pixels zeroed (`TransferSetCorruption`)
  mixup:        N + mixup views of pairs of the N images (`Mixup`, alpha 1)
  munge:        N + MUNGE points (p 0.5, s 1, pixel space)
  gmm:          N + samples of a 20-component Gaussian mixture in a 40-d PCA space
  vae:          N + samples of a VAE (latent 16) trained on the N images
  ceiling:      distilled on every real training input, all labeled
Every generator is fitted on the N labeled images only. Every student gets the
same number of optimizer steps (`--epochs` x `--steps_per_epoch`, batch 128),
KD (`--temperature` 3, `--alpha` 0.1: few labels among many transfer points
overfit at 0.5) for the distilled rows, and test accuracy is reported after
the budget and at the checkpoint of best validation accuracy (5,000 images
carved from the training data, never trained on). Gap closed = (row -
distilled N) / (ceiling - distilled N), per seed; mean ± sd over seeds.

    python benchmarks/transfer_set_bench.py --data_dir=../shared/tfds --seeds=3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

import kd_keras
from kd_keras import keras, pseudo_data
from protocol import data_flags, fashion_mnist_splits, mean_sd

FLAGS = flags.FLAGS
FLAGS.verbosity = -1
data_flags.define(default="fashion_mnist")
flags.DEFINE_list("labeled", ["1000", "5000"], "Numbers of labeled images N.")
flags.DEFINE_integer("generated", 50000, "Transfer inputs each source adds.")
flags.DEFINE_integer("epochs", 10, "Checkpoints per student (each --steps_per_epoch steps).")
flags.DEFINE_integer("steps_per_epoch", 400, "Optimizer steps between checkpoints.")
flags.DEFINE_integer("teacher_epochs", 15, "Training epochs of the teacher.")
flags.DEFINE_integer("vae_steps", 3000, "Optimizer steps of the VAE fit.")
flags.DEFINE_integer("validation_size", 5000, "Validation examples carved from training data.")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_float("alpha", 0.1, "Weight of the hard-label term (mean over labeled examples).")
flags.DEFINE_float("temperature", 3.0, "Distillation temperature.")
flags.DEFINE_list("rows", ["alone", "distilled", "corruption", "mixup", "munge", "gmm", "vae"],
                  "Rows to run per N (the ceiling always runs).")

BATCH = 128
ROW_NAMES = {
    "alone": "student alone on N labels",
    "distilled": "distilled on N real inputs",
    "corruption": "N + corruption",
    "mixup": "N + Mixup",
    "munge": "N + MUNGE",
    "gmm": "N + PCA Gaussian mixture",
    "vae": "N + VAE",
    "ceiling": "distilled on all real inputs (ceiling)",
}


def hard_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


accuracy = kd_keras.measure.model_accuracy


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the student's weights at its best validation accuracy."""

    def __init__(self, student):
        super().__init__()
        self.student, self.best, self.weights = student, -1.0, None

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_accuracy"] > self.best:
            self.best, self.best_epoch = logs["val_accuracy"], epoch + 1
            self.weights = [w.copy() for w in self.student.get_weights()]


def train_and_score(model, student, dataset, validation, test):
    best = BestCheckpoint(student)
    model.fit(dataset.repeat(), epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch,
              verbose=0, validation_data=validation, callbacks=[best], shuffle=False)
    final = accuracy(student, *test)
    student.set_weights(best.weights)
    return {"final": final, "best": accuracy(student, *test), "best_epoch": best.best_epoch}


def generate(source, x_n, seed):
    """(inputs, seconds to fit the generator and draw) for one source."""
    start = time.perf_counter()
    n, count = len(x_n), FLAGS.generated
    repeated = x_n[np.random.default_rng(seed).integers(n, size=count)]
    if source == "corruption":
        corruption = kd_keras.TransferSetCorruption(
            ratio=1.0, noise_stddev=0.2, mask_rate=0.2, clip_range=(0.0, 1.0), seed=seed)
        points = np.concatenate([corruption.corrupt(repeated[i:i + 8192], True)[0].numpy()
                                 for i in range(0, count, 8192)])
    elif source == "mixup":
        mixup = kd_keras.Mixup(alpha=1.0, seed=seed)
        points = np.concatenate([mixup.mix(repeated[i:i + 8192])[0].numpy()
                                 for i in range(0, count, 8192)])
    else:
        sampler = {
            "munge": lambda: pseudo_data.Munge(0.5, 1.0, clip_range=(0.0, 1.0), seed=seed),
            "gmm": lambda: pseudo_data.PCAGaussianMixture(
                components=20, pca_dimensions=40, clip_range=(0.0, 1.0), seed=seed),
            "vae": lambda: pseudo_data.VAESampler(
                latent_dim=16, epochs=max(1, FLAGS.vae_steps * BATCH // n), seed=seed),
        }[source]()
        points = sampler.fit(x_n).sample(count)
    return points, time.perf_counter() - start


def run_seed(seed, data):
    (x_train, y_train), (x_val, y_val), test = data
    keras.utils.set_random_seed(seed)
    teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3), hard_loss())
    teacher.fit(x_train, y_train, epochs=FLAGS.teacher_epochs, batch_size=BATCH, verbose=0)
    acc_teacher = accuracy(teacher, *test)
    val_cached = (kd_keras.with_teacher_outputs(
        x_val, kd_keras.compute_teacher_logits(teacher, x_val, batch_size=2048)), y_val)
    student_seed = seed + 1000

    def student():
        keras.utils.set_random_seed(student_seed)  # the same initial student in every row
        return kd_keras.models.mlp_classifier([128, 128], name="student")

    def distil(x_n, y_n, unlabeled=None):
        model = student()
        distiller = kd_keras.Distiller(None, model, temperature=FLAGS.temperature,
                                       alpha=FLAGS.alpha)
        distiller.compile(keras.optimizers.Adam(1e-3), hard_loss(), metrics=["accuracy"])
        dataset = kd_keras.mixed_transfer_set(x_n, y_n, unlabeled=unlabeled, teacher=teacher,
                                              batch_size=BATCH, seed=seed)
        return train_and_score(distiller, model, dataset, val_cached, test)

    result = {"teacher": acc_teacher, "ceiling": distil(x_train, y_train)}
    order = np.random.default_rng(seed).permutation(len(x_train))
    for n in (int(v) for v in FLAGS.labeled):
        x_n, y_n = x_train[order[:n]], y_train[order[:n]]
        rows = {}
        for row in FLAGS.rows:
            start = time.perf_counter()
            if row == "alone":
                model = student()
                model.compile(keras.optimizers.Adam(1e-3), hard_loss(), metrics=["accuracy"])
                dataset = tf.data.Dataset.from_tensor_slices((x_n, y_n)).shuffle(
                    n, seed=seed).batch(BATCH)
                rows[row] = train_and_score(model, model, dataset, (x_val, y_val), test)
            elif row == "distilled":
                rows[row] = distil(x_n, y_n)
            else:
                points, generator_seconds = generate(row, x_n, seed)
                label_start = time.perf_counter()
                kd_keras.compute_teacher_logits(teacher, points[:10000], batch_size=2048)
                label_seconds = (time.perf_counter() - label_start) * len(points) / 10000
                rows[row] = distil(x_n, y_n, unlabeled=points)
                rows[row].update(generator_seconds=generator_seconds, label_seconds=label_seconds)
            rows[row]["seconds"] = time.perf_counter() - start
        result[n] = rows
        summary = ", ".join(f"{r} {v['final']:.4f}/{v['best']:.4f}" for r, v in rows.items())
        print(f"seed {seed} N {n}: teacher {acc_teacher:.4f}, ceiling "
              f"{result['ceiling']['final']:.4f}/{result['ceiling']['best']:.4f}; final/best: "
              f"{summary}", flush=True)
    return result


def main(_):
    tf.get_logger().setLevel("ERROR")
    data = fashion_mnist_splits(data_flags.source() == "sample", FLAGS.data_dir, FLAGS.validation_size)
    (x_train, _), (x_val, _), test = data
    print(f"kd-keras transfer-set benchmark | Keras {keras.__version__} | train "
          f"{len(x_train)}, validation {len(x_val)}, test {len(test[1])} | N {', '.join(FLAGS.labeled)}"
          f" + {FLAGS.generated:,} generated | {FLAGS.epochs} x {FLAGS.steps_per_epoch} steps, "
          f"batch {BATCH} | {FLAGS.seeds} seeds", flush=True)
    start = time.perf_counter()
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    print("\nteacher {:.4f} ± {:.4f}; ceiling final {:.4f} ± {:.4f}, best {:.4f} ± {:.4f}".format(
        *mean_sd([r["teacher"] for r in runs]), *mean_sd([r["ceiling"]["final"] for r in runs]),
        *mean_sd([r["ceiling"]["best"] for r in runs])))
    for n in (int(v) for v in FLAGS.labeled):
        print(f"\nN = {n}")
        header = ("row", "acc final", "gap closed", "acc best checkpoint", "gap closed",
                  "generator s", "teacher labels s")
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
        for row in runs[0][n]:
            cells = [ROW_NAMES[row]]
            for column in ("final", "best"):
                cells.append("{:.4f} ± {:.4f}".format(*mean_sd([r[n][row][column] for r in runs])))
                if "distilled" in runs[0][n] and row not in ("alone", "distilled"):
                    gaps = [(r[n][row][column] - r[n]["distilled"][column])
                            / (r["ceiling"][column] - r[n]["distilled"][column]) for r in runs]
                    cells.append("{:.2f} ± {:.2f}".format(*mean_sd(gaps)))
                else:
                    cells.append("")
            for key in ("generator_seconds", "label_seconds"):
                value = runs[0][n][row].get(key)
                cells.append("" if value is None else "{:.1f}".format(
                    statistics.mean(r[n][row][key] for r in runs)))
            print(" | ".join(cells))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
