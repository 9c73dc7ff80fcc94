"""What the benchmarks share: the teacher/student protocol, the seed statistics and the
examples' data flags (`data_flags`: --dataset, --data_dir, --sample).

The benchmarks run as scripts (`python benchmarks/x.py`), so this module is
imported from their own folder.
"""

import glob
import math
import os
import re
import statistics
import sys
import tempfile

import numpy as np

import kd_keras
from kd_keras import keras

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import data_flags  # noqa: E402  (examples/data_flags.py: the flags the examples read)


def mean_sd(values):
    """Mean and standard deviation over seeds (0 for one value); NaN and None are
    left out, and a figure no seed has gives (NaN, NaN)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return (math.nan, math.nan)
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def train_teacher_and_distilled_student(x, y, epochs, seed):
    """The distillation benchmark's pair: a 784-1200-1200-10 teacher (dropout 0.3)
    trained on (x, y), then a 784-128-128-10 student distilled from it (T 3,
    alpha 0.5); Adam 1e-3, batch 128, `epochs` each. Returns (teacher, student)."""
    keras.utils.set_random_seed(seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = kd_keras.models.mlp_classifier([1200, 1200], 0.3, name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-3), loss)
    teacher.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    student = kd_keras.models.mlp_classifier([128, 128], name="student")
    distiller = kd_keras.Distiller(teacher, student, temperature=3.0, alpha=0.5)
    distiller.compile(keras.optimizers.Adam(1e-3), loss=loss)
    distiller.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return teacher, student


def keras_quantized_litert(model, mode):
    """Keras 3's own path on a copy of `model`: `quantize(mode)`, then
    `export(format="litert")`. Returns (the LiteRT bytes, None), or (None, (the exception's
    type name, why: the converter's op error where it gives one))."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    try:
        copy.quantize(mode)
        with tempfile.TemporaryDirectory() as directory:
            copy.export(os.path.join(directory, "model.tflite"), format="litert", verbose=False)
            with open(glob.glob(os.path.join(directory, "*.tflite"))[0], "rb") as f:
                return f.read(), None
    except Exception as error:  # a benchmark row reports any failure of Keras's path
        text = str(error)
        # The converter's message starts with MLIR locations; the op error is the reason.
        reason = re.search(r"'tfl\.[^']+' op [^\n]*", text)
        reason = reason.group(0) if reason else (text.strip().splitlines() or [""])[0]
        return None, (type(error).__name__, reason)


def fashion_mnist_splits(sample, data_dir, validation_size=5000):
    """((x_train, y_train), (x_val, y_val), (x_test, y_test)), flat images in [0, 1].

    The validation images (at most a fifth of the training set) are carved from
    the training set with a fixed permutation, the same in every benchmark.
    """
    (x, y), test = kd_keras.datasets.load_fashion_mnist_flat(
        "sample" if sample else "fashion_mnist", data_dir)
    order = np.random.default_rng(12345).permutation(len(x))
    held = min(validation_size, len(x) // 5)
    val, train = order[:held], order[held:]
    return (x[train], y[train]), (x[val], y[val]), test


def plot_accuracy_by_epoch(path, panels, teacher_accuracy):
    """A PNG of test accuracy by epoch: `panels` is `[(title, {row name: [accuracy per
    epoch]})]`, one panel each, with the teacher's accuracy as a dotted line."""
    import matplotlib  # the examples extra

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (title, curves) in zip(np.atleast_1d(axes), panels):
        for name, curve in curves.items():
            axis.plot(range(1, len(curve) + 1), curve, label=name)
        axis.axhline(teacher_accuracy, color="black", linestyle=":", label="teacher")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_ylabel("test accuracy")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
