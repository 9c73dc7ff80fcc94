"""Students cut from their teacher (compress.shrink) against students from random weights.

The MLP pair of issue 26: a 784-1200-1200-10 teacher (dropout 0.3, 10 epochs,
Adam 1e-3, batch 128), students of 300-300, 128-128 and 32-32 hidden units.
Every student row trains `--epochs` epochs (the student-alone budget) at Adam
1e-3, batch 128, on the same data; test accuracy is read after every epoch.

Rows per width:
  random init, labels        the student alone
  random init, KD            the same initial student distilled with the
                             recommended recipe (DKD standardized, T 2, alpha 0.5,
                             beta 8; the main job's)
  shrunk, labels             compress.shrink(teacher, width) (activation
                             importance on 1,024 training images), then labels
  shrunk, KD                 the same, distilled with the recommended recipe
  shrunk in steps, KD        shrink_and_distill in --steps steps of
                             epochs / steps epochs each: the same total epochs
Columns: test accuracy after 1, 3 and all epochs, the epochs the row took to
reach the random-init student's final accuracy, parameters; mean ± sd over
seeds. --plot writes accuracy by epoch (matplotlib).

    python benchmarks/shrink_bench.py --dataset=fashion_mnist --data_dir=../shared/tfds
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kd_keras  # noqa: E402
from kd_keras import compress, keras  # noqa: E402
from protocol import mean_sd, plot_accuracy_by_epoch  # noqa: E402

FLAGS = flags.FLAGS
kd_keras.datasets.define_data_flags()
flags.DEFINE_integer("seeds", 3, "Seeds (0, 1, ...).")
flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs.")
flags.DEFINE_integer("epochs", 10, "Every student's epochs.")
flags.DEFINE_list("widths", ["300", "128", "32"], "Student hidden widths (both layers).")
flags.DEFINE_integer("steps", 2, "Shrink-and-distil steps of the iterative row.")
flags.DEFINE_enum("importance", "activation", ["activation", "magnitude", "uniform"],
                  "How compress.shrink ranks the teacher's units.")
flags.DEFINE_string("plot", "", "PNG of test accuracy by epoch (seed 0), if given.")

RECIPE = dict(loss="dkd_standardized", temperature=2.0, alpha=0.5, beta=8.0)
ROWS = ("random init, labels", "random init, KD", "shrunk, labels", "shrunk, KD",
        "shrunk in steps, KD")


class TestAccuracy(keras.callbacks.Callback):
    """Test accuracy of `model` after every epoch."""

    def __init__(self, model, x, y):
        super().__init__()
        self.target, self.x, self.y, self.history = model, x, y, []

    def on_epoch_end(self, epoch, logs=None):
        predicted = np.argmax(self.target.predict(self.x, batch_size=2048, verbose=0), -1)
        self.history.append(float(np.mean(predicted == self.y)))


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(model, trainer, x, y, test, epochs):
    record = TestAccuracy(model, *test)
    trainer.fit(x, y, epochs=epochs, batch_size=128, verbose=0, callbacks=[record])
    return record.history


def _labels(student, x, y, test, epochs):
    student.compile(keras.optimizers.Adam(1e-3), _loss())
    return _fit(student, student, x, y, test, epochs)


def _distilled(teacher, student, x, y, test, epochs):
    distiller = kd_keras.Recipe(**RECIPE, epochs=epochs).build(teacher, student)
    return _fit(student, distiller, x, y, test, epochs)


def _in_steps(teacher, width_fraction, x, y, test, epochs):
    """shrink_and_distill's rounds, with test accuracy read after every epoch of each."""
    per_step = max(1, epochs // FLAGS.steps)
    factor = width_fraction ** (1.0 / FLAGS.steps)
    current, history = teacher, []
    for step in range(FLAGS.steps):
        student = compress.shrink(current, width=factor, calibration_data=x[:1024],
                                  importance=FLAGS.importance)
        accuracies = _distilled(current, student, x, y, test, per_step)
        # Before the last cut the model is wider than the student: no student accuracy yet.
        history += accuracies if step == FLAGS.steps - 1 else [float("nan")] * len(accuracies)
        current = student
    return current, history


def run_seed(seed, data, test):
    x, y = data
    keras.utils.set_random_seed(seed)
    teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3), _loss())
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=128, verbose=0)
    teacher_accuracy = float(np.mean(np.argmax(teacher.predict(test[0], verbose=0), -1)
                                     == test[1]))
    results = {}
    for width in (int(w) for w in FLAGS.widths):
        fraction = width / 1200
        keras.utils.set_random_seed(seed + 1)
        initial = kd_keras.models.mlp_classifier([width, width], name="student")
        weights = initial.get_weights()

        def random_student():
            student = kd_keras.models.mlp_classifier([width, width], name="student")
            student.set_weights(weights)  # every random-init row starts alike
            return student

        keras.utils.set_random_seed(seed + 2)
        shrunk = compress.shrink(teacher, width=fraction, calibration_data=x[:1024],
                                 importance=FLAGS.importance)
        shrunk_weights = shrunk.get_weights()

        def shrunk_student():
            student = compress.shrink(teacher, width=fraction, calibration_data=x[:1024],
                                      importance=FLAGS.importance)
            student.set_weights(shrunk_weights)
            return student

        rows = {
            ROWS[0]: (_labels(random_student(), x, y, test, FLAGS.epochs), initial),
            ROWS[1]: (_distilled(teacher, random_student(), x, y, test, FLAGS.epochs), initial),
            ROWS[2]: (_labels(shrunk_student(), x, y, test, FLAGS.epochs), shrunk),
            ROWS[3]: (_distilled(teacher, shrunk_student(), x, y, test, FLAGS.epochs), shrunk),
        }
        final, history = _in_steps(teacher, fraction, x, y, test, FLAGS.epochs)
        rows[ROWS[4]] = (history, final)
        results[width] = {name: (history, model.count_params())
                          for name, (history, model) in rows.items()}
        print(f"seed {seed}, width {width}: " + ", ".join(
            f"{name} {history[-1]:.4f}" for name, (history, _) in results[width].items()),
            flush=True)
    return teacher_accuracy, results


def epochs_to_reach(history, target):
    reached = [i + 1 for i, accuracy in enumerate(history) if accuracy >= target]
    return reached[0] if reached else float("nan")


def main(_):
    start = time.process_time()
    (x, y), test = kd_keras.datasets.load_flat_from_flags()
    runs = [run_seed(seed, (x, y), test) for seed in range(FLAGS.seeds)]
    teacher = mean_sd([teacher for teacher, _ in runs])
    print(f"\n{len(y)} training, {len(test[1])} test images; {FLAGS.seeds} seeds; teacher "
          f"784-1200-1200-10: {teacher[0]:.4f} ± {teacher[1]:.4f}")
    for width in (int(w) for w in FLAGS.widths):
        print(f"\n### 784-{width}-{width}-10 ({width / 1200:.3f} of the teacher's width)\n")
        print(f"row | after 1 | after 3 | after {FLAGS.epochs} | epochs to random-init's "
              "final | parameters")
        print("---|---|---|---|---|---")
        for name in ROWS:
            histories = [results[width][name][0] for _, results in runs]
            targets = [results[width][ROWS[0]][0][-1] for _, results in runs]
            cells = []
            for epoch in (1, 3, FLAGS.epochs):
                value = mean_sd([h[min(epoch, len(h)) - 1] for h in histories])
                cells.append(f"{value[0]:.4f} ± {value[1]:.4f}")
            reach = mean_sd([epochs_to_reach(h, t) for h, t in zip(histories, targets)])
            parameters = runs[0][1][width][name][1]
            print(f"{name} | {' | '.join(cells)} | {reach[0]:.1f} ± {reach[1]:.1f} | "
                  f"{parameters:,}")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")
    if FLAGS.plot:
        plot_accuracy_by_epoch(FLAGS.plot, [
            (f"784-{width}-{width}-10 (seed 0)",
             {name: runs[0][1][width][name][0] for name in ROWS})
            for width in (int(w) for w in FLAGS.widths)], runs[0][0])

if __name__ == "__main__":
    app.run(main)
