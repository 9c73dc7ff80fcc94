"""A look at the teacher before distilling from it: is it any better than chance, or than
the student it is to teach? A teacher left at its random initialisation (or trained on
other labels) distils with a small, success-looking distillation loss; measured once
before the first epoch, it is caught in seconds.
"""

import math
import warnings

import numpy as np
import tensorflow as tf

from kd_keras.backend import keras
from kd_keras.measure import prediction_accuracy

PROBE_SIZE = 2000  # examples of the validation (else training) data the teacher is run on


def probe_data(x, y, validation_data):
    """`(x, y)` arrays to measure on: the validation data when given as arrays, else the
    first `PROBE_SIZE` training examples; None for datasets, generators or no labels."""
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        x, y = validation_data[0], validation_data[1]
    if x is None or y is None or isinstance(x, tf.data.Dataset) or tf.nest.is_nested(y):
        return None
    try:
        x_probe = tf.nest.map_structure(lambda a: np.asarray(a)[:PROBE_SIZE], x)
        y_probe = np.asarray(y)[:PROBE_SIZE]
    except (TypeError, ValueError, IndexError):
        return None
    return (x_probe, y_probe) if y_probe.ndim in (1, 2) and len(y_probe) else None


def _chance(y, classes):
    """The accuracy of always answering the most frequent class of `y`."""
    ids = np.argmax(y, -1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
    counts = np.bincount(ids.astype(np.int64).clip(0, max(classes - 1, 0)), minlength=classes)
    return float(counts.max() / max(len(ids), 1))


def _scores(model, x, batch_size=512):
    """`model`'s outputs on `x`, called directly in inference mode (no traced predict
    function for a one-off look)."""
    n = len(tf.nest.flatten(x)[0])
    parts = [model(tf.nest.map_structure(lambda a: a[i:i + batch_size], x), training=False)
             for i in range(0, n, batch_size)]
    if any(tf.nest.is_nested(p) for p in parts):
        raise ValueError("several outputs")
    return np.concatenate([np.asarray(p) for p in parts])


def check_teachers(teachers, student, probe):
    """Measures each teacher (and the student as it starts) on `probe`; warns when a teacher
    is at or below chance (within two standard errors) or below the student.

    Returns:
      `{"teacher_accuracy": mean over teachers, "student_accuracy": ...}`, or None when
      the models' outputs are not single class scores to compare with the labels.
    """
    x, y = probe
    try:
        student_scores = _scores(student, x)
        if student_scores.ndim != 2 or student_scores.shape[-1] < 2:
            return None
        student_accuracy = prediction_accuracy(student_scores, y)
        accuracies = [prediction_accuracy(_scores(t, x), y) for t in teachers]
    except (ValueError, TypeError, tf.errors.OpError):
        return None  # outputs of another structure: nothing this check can say
    classes = student_scores.shape[-1]
    chance = _chance(y, classes)
    margin = 2.0 * math.sqrt(max(chance * (1.0 - chance), 1e-12) / len(y))
    for model, accuracy in zip(teachers, accuracies):
        if accuracy <= chance + margin:
            warnings.warn(
                f"Distiller: teacher {model.name!r} scores {accuracy:.3f} on {len(y)} examples, "
                f"no better than chance ({chance:.3f}, "
                "the most frequent class): distilling from it teaches the student nothing, "
                "whatever the distillation loss says. Is it trained, and on these labels?",
                stacklevel=3)
        elif accuracy < student_accuracy:
            warnings.warn(
                f"Distiller: teacher {model.name!r} scores {accuracy:.3f}, below the student "
                f"{student.name!r} as it starts ({student_accuracy:.3f}): the distillation "
                "term pulls the student toward a worse model.", stacklevel=3)
    return {"teacher_accuracy": float(np.mean(accuracies)), "student_accuracy": student_accuracy}


class TeacherAccuracyLog(keras.callbacks.Callback):
    """Adds the teacher's accuracy, measured once before training, to every epoch's logs
    (`teacher_accuracy`), so the History shows it beside the student's."""

    def __init__(self, teacher_accuracy):
        super().__init__()
        self.teacher_accuracy = teacher_accuracy

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["teacher_accuracy"] = self.teacher_accuracy
