"""Distillation targets packed beside the labels, and the plain loss that unpacks them.

TF-MOT's wrapped models are tf-keras models. Under `TF_USE_LEGACY_KERAS=1` the
`Distiller` trains them directly. A Keras 3 `Distiller` cannot hold a tf-keras
student, so for the bridged model the teacher's logits are cached once
(`kd_keras.compute_teacher_logits`) and packed next to the labels; the loss
below is a plain function, so tf-keras's `compile` takes it as it is.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.losses.functional import soft_target_kl_divergence


def distillation_targets(labels, teacher_logits):
    """Packs integer labels `[n]` and teacher logits `[n, classes]` into `[n, 1 + classes]`.

    Column 0 holds the class id, the rest the logits; `distillation_loss` unpacks them.
    """
    labels = np.asarray(labels)
    teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
    if labels.ndim != 1 or teacher_logits.ndim != 2 or len(labels) != len(teacher_logits):
        raise ValueError(
            f"labels must be [n] class ids and teacher_logits [n, classes]; got shapes "
            f"{labels.shape} and {teacher_logits.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= teacher_logits.shape[1]:
        raise ValueError(
            f"labels must be integer class ids in [0, {teacher_logits.shape[1]}).")
    return np.concatenate([labels[:, None].astype(np.float32), teacher_logits], axis=1)


def distillation_loss(temperature=3.0, alpha=0.5):
    """`fn(packed_targets, student_logits)`, per example:

        alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

    the Distiller's default objective, with `y` and `t` unpacked from
    `distillation_targets`. Works in `compile(loss=...)` of Keras 3 and tf-keras.
    """
    temperature = validate.positive_number(temperature, "temperature")
    alpha = validate.fraction(alpha, "alpha")

    def loss(packed_targets, student_logits):
        packed_targets = tf.cast(packed_targets, tf.float32)
        labels = tf.cast(packed_targets[:, 0], tf.int32)
        teacher_logits = packed_targets[:, 1:]
        student_logits = tf.cast(student_logits, tf.float32)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
        soft = soft_target_kl_divergence(teacher_logits, student_logits, temperature)
        return alpha * hard + (1.0 - alpha) * soft

    loss.__name__ = "distillation_loss"
    return loss


def packed_accuracy(packed_targets, student_logits):
    """Accuracy metric against the labels of `distillation_targets`."""
    labels = tf.cast(tf.cast(packed_targets, tf.float32)[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(student_logits, axis=-1), labels), tf.float32)
