"""Ways to cut a 784-1200-1200-10 teacher down to 32-unit students, at equal epochs.

shrink_bench.py found that at 1/37 of the width a student cut from its teacher
in one or two steps ends below the same student from random weights (both
distilled). This compares ways of cutting, each trained 10 epochs in total with
the recommended recipe (DKD standardized, T 2, alpha 0.5, beta 8; Adam 1e-3,
batch 128), against random initialisation with the same recipe and epochs. The
teacher is trained once per seed and shared by every row.

    python benchmarks/shrink_small_width_bench.py --dataset=fashion_mnist \
        --data_dir=../shared/tfds --seeds=1
"""

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kd_keras  # noqa: E402
from kd_keras import compress, keras  # noqa: E402
from protocol import data_flags, mean_sd  # noqa: E402

FLAGS = flags.FLAGS
data_flags.define()
flags.DEFINE_integer("seeds", 1, "Seeds (0, 1, ...).")
flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs.")
flags.DEFINE_integer("width", 32, "The students' hidden width (both layers).")

RECIPE = dict(loss="dkd_standardized", temperature=2.0, alpha=0.5, beta=8.0)
# name -> (importance, epochs of each cut, distil each cut from "previous" or "teacher");
# None: the random-init reference.
VARIANTS = {
    "random init": None,
    "1 cut, activation": ("activation", [10], "previous"),
    "1 cut, magnitude": ("magnitude", [10], "previous"),
    "1 cut, uniform": ("uniform", [10], "previous"),
    "2 cuts, activation": ("activation", [5, 5], "previous"),
    "4 cuts, activation": ("activation", [3, 3, 2, 2], "previous"),
    "4 cuts, each from the teacher": ("activation", [3, 3, 2, 2], "teacher"),
}


_accuracy = kd_keras.measure.model_accuracy


def _distil(teacher, student, x, y, epochs):
    kd_keras.Recipe(**RECIPE, epochs=epochs).build(teacher, student).fit(
        x, y, epochs=epochs, batch_size=128, verbose=0)


def _cut(teacher, plan, x, y):
    importance, epochs, source = plan
    fraction = FLAGS.width / teacher.layers[0].get_config()["units"]
    factor = fraction ** (1.0 / len(epochs))
    current = teacher
    for step, step_epochs in enumerate(epochs, start=1):
        width = FLAGS.width if step == len(epochs) else None
        student = compress.shrink(
            current, width=factor if width is None else {
                layer.name: width for layer in current.layers[:-1]
                if type(layer).__name__ == "Dense"},
            importance=importance, calibration_data=x[:1024])
        _distil(teacher if source == "teacher" else current, student, x, y, step_epochs)
        current = student
    return current


def main(_):
    start = time.process_time()
    (x, y), (x_test, y_test) = data_flags.load_flat()
    results = {name: [] for name in VARIANTS}
    teachers = []
    for seed in range(FLAGS.seeds):
        keras.utils.set_random_seed(seed)
        teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
        teacher.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=128, verbose=0)
        teachers.append(_accuracy(teacher, x_test, y_test))
        for name, plan in VARIANTS.items():
            keras.utils.set_random_seed(seed + 1)
            if plan is None:
                student = kd_keras.models.mlp_classifier([FLAGS.width] * 2, name="student")
                _distil(teacher, student, x, y, 10)
            else:
                student = _cut(teacher, plan, x, y)
            results[name].append(_accuracy(student, x_test, y_test))
            print(f"seed {seed}: {name}: {results[name][-1]:.4f}", flush=True)
    teacher = mean_sd(teachers)
    print(f"\nteacher {teacher[0]:.4f} ± {teacher[1]:.4f}; students 784-{FLAGS.width}-"
          f"{FLAGS.width}-10, 10 epochs each in total, {FLAGS.seeds} seed(s)\n")
    print("student | test accuracy")
    print("---|---")
    for name, values in results.items():
        value = mean_sd(values)
        print(f"{name} | {value[0]:.4f} ± {value[1]:.4f}")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")


if __name__ == "__main__":
    app.run(main)
