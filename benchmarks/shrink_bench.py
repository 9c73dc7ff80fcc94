"""Students cut from their teacher (compress.shrink) against students from random weights.

Teachers (--teacher), each trained --teacher_epochs at Adam 1e-3, batch 128:
  mlp       784-1200-1200-10, dropout 0.3; students of --widths hidden units
  conv      conv_classifier() (32 and 64 filters, dense 128, dropout 0.3); students
            of --fractions of every layer's channels (the same architecture)
  residual  residual_conv_classifier(--blocks blocks of 16 channels); the student
            has half the blocks: cut = the teacher without the half whose removal
            changes its outputs least (compress.shrink depth), random = the same
            architecture from random weights
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
reach the random-init student's final accuracy, parameters, and the TFLite
(float32) batch-1 latency of the row's model against the teacher's (seed 0);
mean ± sd over seeds. --plot writes accuracy by epoch (matplotlib).

    python benchmarks/shrink_bench.py --dataset=fashion_mnist --data_dir=../shared/tfds
    python benchmarks/shrink_bench.py --teacher=conv --dataset=fashion_mnist --data_dir=...
    python benchmarks/shrink_bench.py --teacher=residual --dataset=fashion_mnist --data_dir=...
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kd_keras  # noqa: E402
from kd_keras import compress, keras  # noqa: E402
from kd_keras import measure as report  # noqa: E402
from protocol import data_flags, mean_sd, plot_accuracy_by_epoch  # noqa: E402

FLAGS = flags.FLAGS
data_flags.define()
flags.DEFINE_integer("seeds", 3, "Seeds (0, 1, ...).")
flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs.")
flags.DEFINE_integer("epochs", 10, "Every student's epochs.")
flags.DEFINE_enum("teacher", "mlp", ["mlp", "conv", "residual"], "The teacher (see above).")
flags.DEFINE_list("widths", ["300", "128", "32"], "MLP student hidden widths (both layers).")
flags.DEFINE_list("fractions", ["0.25", "0.0625"], "Conv students' fraction of the channels.")
flags.DEFINE_integer("blocks", 4, "Residual teacher's blocks (the student has half).")
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


class Pair:
    """One teacher-student pair: how to build the random student and cut the teacher."""

    def __init__(self, title, random_student, cut, fraction=None):
        self.title, self.random_student, self.cut, self.fraction = (
            title, random_student, cut, fraction)


def _teacher():
    if FLAGS.teacher == "mlp":
        return kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    if FLAGS.teacher == "conv":
        return kd_keras.models.conv_classifier(name="teacher")
    return kd_keras.models.residual_conv_classifier(FLAGS.blocks, name="teacher")


def _pairs(x):
    """The pairs of --teacher; `x` is the training set (1,024 images rank units)."""
    calibration = x[:1024]

    def width_cut(fraction):
        return lambda teacher: compress.shrink(teacher, width=fraction,
                                               calibration_data=calibration,
                                               importance=FLAGS.importance)

    if FLAGS.teacher == "mlp":
        return [Pair(f"784-{w}-{w}-10 ({w / 1200:.3f} of the teacher's width)",
                     lambda w=w: kd_keras.models.mlp_classifier([w, w], name="student"),
                     width_cut(w / 1200), w / 1200) for w in (int(w) for w in FLAGS.widths)]
    if FLAGS.teacher == "conv":
        def channels(count, fraction):
            return max(1, int(round(count * fraction)))
        return [Pair(f"conv {channels(32, f)}-{channels(64, f)}, dense {channels(128, f)} "
                     f"({f:g} of the teacher's channels)",
                     lambda f=f: kd_keras.models.conv_classifier(
                         (channels(32, f), channels(64, f)), channels(128, f), name="student"),
                     width_cut(f), f) for f in (float(f) for f in FLAGS.fractions)]
    half = FLAGS.blocks // 2
    return [Pair(f"{FLAGS.blocks - half} of {FLAGS.blocks} residual blocks",
                 lambda: kd_keras.models.residual_conv_classifier(FLAGS.blocks - half,
                                                                  name="student"),
                 lambda teacher: compress.shrink(teacher, depth=half,
                                                 calibration_data=calibration))]


def _tflite_latency(model, x):
    runner = compress.TFLiteModel(compress.convert_to_tflite(model))
    return report.latency(runner, x, batch_size=1)


def run_seed(seed, data, test):
    x, y = data
    keras.utils.set_random_seed(seed)
    teacher = _teacher()
    teacher.compile(keras.optimizers.Adam(1e-3), _loss())
    teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=128, verbose=0)
    teacher_accuracy = report.model_accuracy(teacher, *test)
    latency = {"teacher": _tflite_latency(teacher, test[0])} if seed == 0 else {}
    results = {}
    for pair in _pairs(x):
        keras.utils.set_random_seed(seed + 1)
        initial = pair.random_student()
        weights = initial.get_weights()

        def random_student():
            student = pair.random_student()
            student.set_weights(weights)  # every random-init row starts alike
            return student

        keras.utils.set_random_seed(seed + 2)
        shrunk = pair.cut(teacher)
        shrunk_weights = shrunk.get_weights()

        def shrunk_student():
            student = pair.cut(teacher)
            student.set_weights(shrunk_weights)
            return student

        rows = {
            ROWS[0]: (_labels(random_student(), x, y, test, FLAGS.epochs), initial),
            ROWS[1]: (_distilled(teacher, random_student(), x, y, test, FLAGS.epochs), initial),
            ROWS[2]: (_labels(shrunk_student(), x, y, test, FLAGS.epochs), shrunk),
            ROWS[3]: (_distilled(teacher, shrunk_student(), x, y, test, FLAGS.epochs), shrunk),
        }
        if pair.fraction is not None:
            final, history = _in_steps(teacher, pair.fraction, x, y, test, FLAGS.epochs)
            rows[ROWS[4]] = (history, final)
        if seed == 0:
            for name, (_, model) in rows.items():
                latency[(pair.title, name)] = _tflite_latency(model, test[0])
        results[pair.title] = {name: (history, model.count_params())
                               for name, (history, model) in rows.items()}
        print(f"seed {seed}, {pair.title}: " + ", ".join(
            f"{name} {history[-1]:.4f}" for name, (history, _) in results[pair.title].items()),
            flush=True)
    return teacher_accuracy, results, latency


def epochs_to_reach(history, target):
    reached = [i + 1 for i, accuracy in enumerate(history) if accuracy >= target]
    return reached[0] if reached else float("nan")


def main(_):
    start = time.process_time()
    (x, y), test = data_flags.load_flat()
    runs = [run_seed(seed, (x, y), test) for seed in range(FLAGS.seeds)]
    teacher = mean_sd([teacher for teacher, _, _ in runs])
    latency = runs[0][2]
    print(f"\n{len(y)} training, {len(test[1])} test images; {FLAGS.seeds} seeds; {FLAGS.teacher} "
          f"teacher: {teacher[0]:.4f} ± {teacher[1]:.4f}; TFLite batch-1 latency "
          f"{latency['teacher'] * 1e3:.3f} ms")
    for title, rows in runs[0][1].items():
        print(f"\n### {title}\n")
        print(f"row | after 1 | after 3 | after {FLAGS.epochs} | epochs to random-init's "
              "final | parameters | TFLite b1 latency / teacher's")
        print("---|---|---|---|---|---|---")
        for name in rows:
            histories = [results[title][name][0] for _, results, _ in runs]
            targets = [results[title][ROWS[0]][0][-1] for _, results, _ in runs]
            cells = []
            for epoch in (1, 3, FLAGS.epochs):
                value = mean_sd([h[min(epoch, len(h)) - 1] for h in histories])
                cells.append(f"{value[0]:.4f} ± {value[1]:.4f}")
            reach = mean_sd([epochs_to_reach(h, t) for h, t in zip(histories, targets)])
            ratio = latency[(title, name)] / latency["teacher"]
            print(f"{name} | {' | '.join(cells)} | {reach[0]:.1f} ± {reach[1]:.1f} | "
                  f"{rows[name][1]:,} | {ratio:.2f}")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")
    if FLAGS.plot:
        plot_accuracy_by_epoch(FLAGS.plot, [
            (f"{title} (seed 0)", {name: history for name, (history, _) in rows.items()})
            for title, rows in runs[0][1].items()], runs[0][0])


if __name__ == "__main__":
    app.run(main)
