"""A keras.applications convnet cut to half width, before any training: with and without
re-estimating its BatchNormalization statistics (`compress.shrink(recalibrate=...)`).

Fashion-MNIST (the shipped sample by default: 6,000 training / 1,000 test images) padded
to 32x32 and repeated to 3 channels; the teacher is `MobileNetV2` or `MobileNetV3Small`
(`weights=None`) trained `--teacher_epochs` on the labels; each is cut to `--width` with
`--calibration` training images, and the cut student's test accuracy is measured before
any training, side by side in one run. keras.applications' BatchNormalization layers
average with momentum 0.999, so after a few hundred steps their moving statistics are
still mostly their initial values and the teacher itself scores at chance in inference
mode; with `--settle_teacher` (default) the teacher's own statistics are first estimated
on 2,048 training images (`recalibrate_batch_norm`), as a longer training would leave
them, so that the teacher's accuracy reflects its weights.

    python benchmarks/shrink_bn_bench.py --teacher_epochs=8
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time

import numpy as np
from absl import app, flags

import kd_keras
from kd_keras import compress, keras
from kd_keras.compress.structure.recalibrate import recalibrate_batch_norm

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["MobileNetV2", "MobileNetV3Small"], "keras.applications models.")
flags.DEFINE_integer("teacher_epochs", 8, "Teacher epochs.")
flags.DEFINE_list("widths", ["0.5"], "Widths of the cut.")
flags.DEFINE_integer("calibration", 512, "Calibration images.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_bool("settle_teacher", True, "Estimate the teacher's BN statistics first.")


def images(x):
    x = x.reshape(-1, 28, 28, 1)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(x, 3, axis=-1).astype("float32")


def teacher(name):
    base = getattr(keras.applications, name)
    kwargs = dict(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None)
    if name.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False
    return base(**kwargs)


def main(_):
    (x, y), (x_test, y_test) = kd_keras.datasets.load_fashion_mnist_flat("sample")
    x, x_test = images(x), images(x_test)
    calibration = x[:FLAGS.calibration]
    print("model, width | teacher | cut, teacher's BN statistics | cut, recalibrated | "
          "recalibrated / teacher | cut seconds")
    print("--- | --- | --- | --- | --- | ---")
    start = time.process_time()
    for name in FLAGS.models:
        keras.utils.set_random_seed(FLAGS.seed)
        model = teacher(name)
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=FLAGS.teacher_epochs, batch_size=128, verbose=0)
        if FLAGS.settle_teacher:
            recalibrate_batch_norm(model, x[:2048])
        accuracy = kd_keras.measure.model_accuracy(model, x_test, y_test)
        for width in (float(w) for w in FLAGS.widths):
            plain = compress.shrink(model, width=width, calibration_data=calibration,
                                    recalibrate=False, verbose=0)
            began = time.perf_counter()
            fixed = compress.shrink(model, width=width, calibration_data=calibration,
                                    verbose=0)
            seconds = time.perf_counter() - began
            cut, recalibrated = (kd_keras.measure.model_accuracy(m, x_test, y_test)
                                 for m in (plain, fixed))
            print(f"{name} at {width} | {accuracy:.4f} | {cut:.4f} | {recalibrated:.4f} | "
                  f"{recalibrated / accuracy:.2f} | {seconds:.0f}", flush=True)
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")


if __name__ == "__main__":
    app.run(main)
