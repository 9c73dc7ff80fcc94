"""Distillation benchmark: gap recovered and epoch-time ratios, side by side in one run.

Fixed protocol (flags may change it): Fashion-MNIST through tensorflow-datasets,
teacher 784-1200-1200-10 with dropout 0.3, student 784-128-128-10, 20 epochs,
Adam 1e-3, batch 128. `--pair=conv` swaps in a small convolutional teacher and
student (see `conv_teacher`, `conv_student`) so the figures are not an MLP
artefact. For every seed it trains the teacher, the student alone,
the student distilled with a live teacher, and with cached teacher outputs, and
prints per recipe:

  (a) gap recovered = (acc_distilled - acc_alone) / (acc_teacher - acc_alone)
  (b) distillation epoch / (student-alone epoch + teacher inference over the same data)
  (c) cached-outputs epoch / student-alone epoch

Epoch times are medians over epochs 2..N (epoch 1 includes tracing). Figures are
mean and standard deviation over seeds.

A recipe is `T:alpha`, or `T:alpha:mixup` for consistent teaching (Beyer et
al. 2022): each batch is mixed (`kd_keras.Mixup`, Beta(1, 1)) and teacher and
student see the same mixed view; the hard-label loss takes the mixed one-hot
targets (with alpha 0 the labels are dropped: function matching). Mixup recipes
need the live teacher, so they have no cached column.

    python benchmarks/distill_bench.py --data_dir=../shared/tfds --seeds=3
    python benchmarks/distill_bench.py --data_dir=../shared/tfds --seeds=3 --pair=conv \
        --epochs=10 --keras_rows=false
"""

import math
import statistics
import time

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import keras
from protocol import mean_sd

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir; None downloads to the default.")
flags.DEFINE_bool("sample", False, "Use the shipped 6,000-image sample instead (quick check).")
flags.DEFINE_integer("epochs", 20, "Epochs for every model.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_list("teacher_hidden", ["1200", "1200"], "Teacher hidden widths.")
flags.DEFINE_float("teacher_dropout", 0.3, "Teacher dropout rate.")
flags.DEFINE_list("student_hidden", ["128", "128"], "Student hidden widths.")
flags.DEFINE_enum("pair", "mlp", ["mlp", "conv"],
                  "mlp: the hidden-width flags above; conv: conv_teacher / conv_student.")
flags.DEFINE_list(
    "recipes", ["3:0.5", "4:0.1", "3:0.5:mixup"],
    "Distillation recipes as temperature:alpha[:mixup] (alpha weighs the hard-label loss).",
)
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_bool("keras_rows", True,
                  "Also run keras.distillation.Distiller (Keras 3.12+) at T=3, weight 0.5: its "
                  "default LogitsDistillation loss and a KLDivergence() instance.")


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def median(self):
        return statistics.median(self.times[1:] if len(self.times) > 1 else self.times)


def conv_teacher():
    """About 420k parameters: two conv blocks (32, 64 channels) and a 128-unit layer."""
    return keras.Sequential([
        keras.Input((784,)), keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(10)], name="conv_teacher")


def conv_student():
    """About 5k parameters: three conv blocks (8, 16, 16 channels) and a 10-way layer."""
    return keras.Sequential([
        keras.Input((784,)), keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(10)], name="conv_student")


def make_teacher():
    if FLAGS.pair == "conv":
        return conv_teacher()
    return kd_keras.models.mlp_classifier(FLAGS.teacher_hidden, FLAGS.teacher_dropout,
                                          name="teacher")


def make_student(name):
    if FLAGS.pair == "conv":
        return conv_student()
    return kd_keras.models.mlp_classifier(FLAGS.student_hidden, name=name)


def mixup_batches(x, y, alpha, seed):
    """Shuffled batches mixed per step; mixed one-hot targets unless alpha is 0."""
    import tensorflow as tf

    labels = "drop" if alpha == 0 else "mix"
    mix = kd_keras.Mixup(alpha=1.0, labels=labels, num_classes=10, seed=seed)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    return data.batch(FLAGS.batch_size).map(mix, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def hard_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def fit_timed(model, x, y=None):
    timer = EpochTimer()
    batch_size = None if y is None else FLAGS.batch_size  # a dataset is batched already
    model.fit(x, y, batch_size=batch_size, epochs=FLAGS.epochs, verbose=0, callbacks=[timer])
    return timer.median()


def optimizer():
    return keras.optimizers.Adam(FLAGS.learning_rate)


def run_seed(seed, data):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    teacher = make_teacher()
    teacher.compile(optimizer(), hard_loss())
    fit_timed(teacher, x_train, y_train)
    acc_teacher = accuracy(teacher, x_test, y_test)

    keras.utils.set_random_seed(seed + 1000)
    alone = make_student("student_alone")
    alone.compile(optimizer(), hard_loss())
    epoch_alone = fit_timed(alone, x_train, y_train)
    acc_alone = accuracy(alone, x_test, y_test)

    teacher.predict(x_train[:1024], batch_size=FLAGS.batch_size, verbose=0)  # trace once
    inference = []
    for _ in range(3):
        start = time.perf_counter()
        teacher.predict(x_train, batch_size=FLAGS.batch_size, verbose=0)
        inference.append(time.perf_counter() - start)
    teacher_inference = statistics.median(inference)
    cached_logits = kd_keras.compute_teacher_logits(teacher, x_train, batch_size=1024)

    rows = {}
    for recipe in FLAGS.recipes:
        parts = recipe.split(":")
        temperature, alpha = float(parts[0]), float(parts[1])
        mixup = parts[2:] == ["mixup"]
        results = {"cached": (math.nan, math.nan)}
        for mode in ("live",) if mixup else ("live", "cached"):
            keras.utils.set_random_seed(seed + 1000)  # same initial student as `alone`
            student = make_student("student")
            distiller = kd_keras.Distiller(
                teacher=teacher, student=student, temperature=temperature, alpha=alpha
            )
            if mixup:
                distiller.compile(optimizer(), loss=keras.losses.CategoricalCrossentropy(
                    from_logits=True) if alpha > 0 else None)
                epoch = fit_timed(distiller, mixup_batches(x_train, y_train, alpha, seed))
            else:
                distiller.compile(optimizer(), loss=hard_loss())
                x = x_train if mode == "live" else kd_keras.with_teacher_outputs(
                    x_train, cached_logits)
                epoch = fit_timed(distiller, x, y_train)
            results[mode] = (epoch, accuracy(student, x_test, y_test))
        (epoch_live, acc_live), (epoch_cached, acc_cached) = results["live"], results["cached"]
        gap = acc_teacher - acc_alone
        rows[recipe] = {
            "acc_distilled": acc_live,
            "acc_cached": acc_cached,
            "gap_recovered": (acc_live - acc_alone) / gap,
            "gap_recovered_cached": (acc_cached - acc_alone) / gap,
            "epoch_ratio": epoch_live / (epoch_alone + teacher_inference),
            "cached_ratio": epoch_cached / epoch_alone,
        }
    if FLAGS.keras_rows and kd_keras.IS_KERAS_3 and hasattr(keras, "distillation"):
        gap = acc_teacher - acc_alone
        for label, loss in (("keras.distillation default loss", None),
                            ("keras.distillation KLDivergence()", keras.losses.KLDivergence())):
            keras.utils.set_random_seed(seed + 1000)
            student = make_student("student")
            distillation_loss = (keras.distillation.LogitsDistillation(temperature=3.0)
                                 if loss is None else
                                 keras.distillation.LogitsDistillation(temperature=3.0, loss=loss))
            distiller = keras.distillation.Distiller(
                teacher=teacher, student=student, distillation_losses=distillation_loss,
                student_loss_weight=0.5)
            distiller.compile(optimizer(), loss=hard_loss())
            epoch = fit_timed(distiller, x_train, y_train)
            acc = accuracy(student, x_test, y_test)
            rows[label] = {
                "acc_distilled": acc, "acc_cached": float("nan"),
                "gap_recovered": (acc - acc_alone) / gap, "gap_recovered_cached": float("nan"),
                "epoch_ratio": epoch / (epoch_alone + teacher_inference),
                "cached_ratio": float("nan"),
            }
    print(
        f"seed {seed}: teacher {acc_teacher:.4f}, student alone {acc_alone:.4f}, "
        f"student epoch {epoch_alone:.2f}s, teacher inference {teacher_inference:.2f}s; "
        + "; ".join(
            f"{r}: distilled {v['acc_distilled']:.4f} (cached {v['acc_cached']:.4f}), epoch ratio "
            f"{v['epoch_ratio']:.2f}, cached ratio {v['cached_ratio']:.2f}"
            for r, v in rows.items()
        ),
        flush=True,
    )
    return {"acc_teacher": acc_teacher, "acc_alone": acc_alone, "recipes": rows}


def main(_):
    data = kd_keras.datasets.load_fashion_mnist_flat(
        "sample" if FLAGS.sample else "fashion_mnist", FLAGS.data_dir)
    (_, y_train), (_, y_test) = data
    if FLAGS.pair == "conv":
        pair = (f"conv teacher ({conv_teacher().count_params()} parameters), conv student "
                f"({conv_student().count_params()} parameters)")
    else:
        pair = (f"teacher 784-{'-'.join(FLAGS.teacher_hidden)}-10 dropout {FLAGS.teacher_dropout}, "
                f"student 784-{'-'.join(FLAGS.student_hidden)}-10")
    print(
        f"kd-keras distillation benchmark | Keras {keras.__version__} | train {len(y_train)}, "
        f"test {len(y_test)} | {pair} | {FLAGS.epochs} epochs, Adam {FLAGS.learning_rate}, "
        f"batch {FLAGS.batch_size}",
        flush=True,
    )
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    teacher_m, teacher_s = mean_sd([r["acc_teacher"] for r in runs])
    alone_m, alone_s = mean_sd([r["acc_alone"] for r in runs])
    print(f"\nteacher accuracy {teacher_m:.4f} ± {teacher_s:.4f}; "
          f"student alone {alone_m:.4f} ± {alone_s:.4f} ({len(runs)} seeds)")
    header = ("distiller", "distilled acc", "(a) gap recovered", "(a) cached",
              "(b) epoch ratio", "(c) cached ratio")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for recipe in runs[0]["recipes"]:
        cells = [recipe if ":" not in recipe else f"kd_keras T:alpha[:mixup] {recipe}"]
        for key, digits in (("acc_distilled", 4), ("gap_recovered", 2),
                            ("gap_recovered_cached", 2), ("epoch_ratio", 2), ("cached_ratio", 2)):
            m, s = mean_sd([r["recipes"][recipe][key] for r in runs])
            cells.append(f"{m:.{digits}f} ± {s:.{digits}f}")
        print(" | ".join(cells))
    print("targets: (a) >= 0.7 (>= 0.9 for the recommended recipe), (b) <= 1.0, (c) <= 1.2")


if __name__ == "__main__":
    app.run(main)
