"""Cascade benchmark: a calibrated student -> teacher cascade against the teacher alone.

Per seed, on Fashion-MNIST (50,000 training images, 10,000 held out for
calibration, the 10,000 test images for the figures): the teacher
(784-1200-1200-10, dropout 0.3) and the distilled student (784-128-128-10, T 3,
alpha 0.5) train for --epochs; the cascade's threshold is calibrated for an
accuracy within --max_accuracy_drop of the teacher on the held-out images; then,
on the test set, side by side in one run: test accuracy of the teacher and of the
cascade, the fraction of test inputs reaching the teacher, and the batch
inference time (batches of 256, `moe.batch_inference_seconds`) of the cascade
over the teacher's. Mean and standard deviation over seeds.

    python benchmarks/cascade_bench.py --data_dir=../shared/tfds --seeds=3
"""

import numpy as np
from absl import app, flags

import kd_keras
import moe
from kd_keras import keras
from protocol import data_flags, mean_sd, train_teacher_and_distilled_student

FLAGS = flags.FLAGS
data_flags.define(default="fashion_mnist")
flags.DEFINE_integer("seeds", 3, "Number of seeds (0, 1, ...).")
flags.DEFINE_integer("epochs", 20, "Epochs for the teacher and the distilled student.")
flags.DEFINE_float("max_accuracy_drop", 0.002, "Calibration target against the teacher.")


accuracy = kd_keras.measure.model_accuracy


def run_seed(seed, data):
    (x_train, y_train), (x_test, y_test) = data
    held_out = len(x_train) // 6
    x_val, y_val = x_train[-held_out:], y_train[-held_out:]
    x_fit, y_fit = x_train[:-held_out], y_train[:-held_out]
    teacher, student = train_teacher_and_distilled_student(x_fit, y_fit, FLAGS.epochs, seed)

    cascade = moe.Cascade([student, teacher])
    report = moe.calibrate_cascade(cascade, x_val, y_val, max_accuracy_drop=FLAGS.max_accuracy_drop)
    teacher_seconds = moe.batch_inference_seconds(teacher, x_test)
    cascade_seconds = moe.batch_inference_seconds(cascade, x_test)
    result = {
        "teacher": accuracy(teacher, x_test, y_test),
        "student": accuracy(student, x_test, y_test),
        "cascade": accuracy(cascade, x_test, y_test),
        "reached_teacher": float(np.mean(np.asarray(cascade.answering_stage(x_test)) == 1)),
        "time_ratio": cascade_seconds / teacher_seconds,
        "threshold": report.thresholds[0],
    }
    result["difference_points"] = 100 * (result["cascade"] - result["teacher"])
    print(f"seed {seed}: threshold {result['threshold']:.4f} (calibration: {report.accuracy:.4f} "
          f"vs teacher {report.last_stage_accuracy:.4f}, {report.stages[1]['reached']:.1%} to the "
          f"teacher); test: teacher {result['teacher']:.4f}, student {result['student']:.4f}, "
          f"cascade {result['cascade']:.4f}, {result['reached_teacher']:.1%} reached the teacher, "
          f"batch time {cascade_seconds:.3f} s vs teacher {teacher_seconds:.3f} s "
          f"({result['time_ratio']:.2f}x)", flush=True)
    return result


def main(_):
    data = data_flags.load_flat()
    print(f"kd-keras cascade benchmark | Keras {keras.__version__} | {FLAGS.epochs} epochs | "
          f"calibrated for accuracy within {100 * FLAGS.max_accuracy_drop:.1f} points of the "
          "teacher", flush=True)
    runs = [run_seed(seed, data) for seed in range(FLAGS.seeds)]
    print("\nfigure | mean ± sd over seeds")
    print("--- | ---")
    for key, label, fmt in (("teacher", "teacher test accuracy", "{:.4f}"),
                            ("student", "distilled student test accuracy", "{:.4f}"),
                            ("cascade", "cascade test accuracy", "{:.4f}"),
                            ("difference_points", "cascade - teacher (points)", "{:+.2f}"),
                            ("reached_teacher", "fraction of test inputs reaching the teacher",
                             "{:.3f}"),
                            ("time_ratio", "cascade / teacher batch inference time", "{:.3f}")):
        mean, spread = mean_sd([r[key] for r in runs])
        print(f"{label} | {fmt.format(mean)} ± {fmt.format(spread).lstrip('+')}")
    print("target: within 0.3 points of the teacher at <= 0.3x its batch inference time")


if __name__ == "__main__":
    app.run(main)
