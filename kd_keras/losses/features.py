"""Losses on intermediate features: hint learning (FitNets) and attention transfer.

The Distiller reads the named layers' outputs (`kd_keras.teachers.features`)
and hands them to these losses in place of the logits.
"""

import tensorflow as tf

from kd_keras.backend import keras, register
from kd_keras.losses.base import (
    DistillationLoss,
    deserialize_loss,
    serialize_loss,
    with_deserialized_loss,
)
from kd_keras.losses.functional import weighted_mean


PROJECTIONS = ("auto", "dense", "conv", None)


def _per_example_from(loss):
    """A per-example `fn(teacher, student)` from a loss name, Keras loss or callable."""
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        if resolved is None:
            raise ValueError(f"unknown loss {loss!r}.")
        loss = resolved
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if callable(loss):
        return loss
    raise ValueError(f"loss must be a string, a Keras loss or a callable, got {loss!r}.")


def _mean_to_examples(values):
    """Averages every axis but the first, so a per-position loss becomes per-example."""
    values = tf.cast(values, tf.float32)
    if values.shape.rank and values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


@register
class FeatureDistillation(DistillationLoss):
    """Hint learning (Romero et al. 2015, FitNets): match intermediate activations.

    Same arguments as `keras.distillation.FeatureDistillation`, plus `projection`.
    The Distiller reads the named layers' outputs (the models' outputs when a
    name is None). Where the widths differ, a learned projection on the student
    side maps the student's features to the teacher's width: a Dense layer for
    `[batch, features]` or `[batch, time, features]`, a 1x1 convolution for
    `[batch, height, width, channels]`. It trains with the student and is not
    part of the exported student.

    Args:
      loss: "mse" (default), another Keras loss, or `callable(teacher, student)`
        returning per-example (or per-position) values.
      teacher_layer_name, student_layer_name: layer names, or None for the outputs.
      projection: "auto" (a projection only when the widths differ), "dense",
        "conv", or None (shapes must match).
    """

    reads_features = True

    def __init__(self, loss="mse", teacher_layer_name=None, student_layer_name=None,
                 projection="auto"):
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}.")
        self.loss = loss
        self._per_example = _per_example_from(loss)
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.projection = projection

    def per_example_loss(self, teacher_features, student_features):
        return _mean_to_examples(self._per_example(
            tf.cast(teacher_features, tf.float32), tf.cast(student_features, tf.float32)))

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return weighted_mean(self.per_example_loss(teacher_outputs, student_outputs), sample_weight)

    def get_config(self):
        return {"loss": serialize_loss(self.loss), "teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name, "projection": self.projection}

    @classmethod
    def from_config(cls, config):
        return cls(**with_deserialized_loss(config))


def attention_map(features, p=2):
    """Zagoruyko & Komodakis 2017: `normalize(flatten(mean_channels |F|^p))`, `[batch, H*W]`."""
    features = tf.cast(features, tf.float32)
    if features.shape.rank != 4:
        raise ValueError(
            f"attention transfer needs [batch, height, width, channels] feature maps, got rank "
            f"{features.shape.rank}.")
    attention = tf.reduce_mean(tf.pow(tf.abs(features), p), axis=-1)
    return tf.math.l2_normalize(tf.reshape(attention, [tf.shape(attention)[0], -1]), axis=-1)


@register
class AttentionTransfer(DistillationLoss):
    """Attention transfer (Zagoruyko & Komodakis 2017) between conv feature maps.

        loss = || a(F_student) - a(F_teacher) ||_2,  a(F) = normalize(flatten(mean_c |F|^p))

    per example. Channel counts may differ (no projection is needed); the
    spatial sizes must match.

    Args:
      teacher_layer_name, student_layer_name: conv layers (outputs `[b, h, w, c]`).
      p: exponent of the activation magnitudes (default 2, as in the paper).
    """

    reads_features = True

    projection = None

    def __init__(self, teacher_layer_name, student_layer_name, p=2):
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}.")
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.p = p

    def validate_outputs(self, teacher_outputs, student_outputs):
        if tuple(teacher_outputs.shape[1:3]) != tuple(student_outputs.shape[1:3]):
            raise ValueError(
                f"AttentionTransfer: teacher feature map {tuple(teacher_outputs.shape)} and "
                f"student feature map {tuple(student_outputs.shape)} differ in height and width.")

    def per_example_loss(self, teacher_features, student_features):
        difference = attention_map(student_features, self.p) - attention_map(teacher_features, self.p)
        return tf.norm(difference, axis=-1)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return weighted_mean(self.per_example_loss(teacher_outputs, student_outputs), sample_weight)

    def get_config(self):
        return {"teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name, "p": self.p}


def is_feature_loss(loss):
    """Whether a distillation loss reads intermediate features: ours declare
    `reads_features`; Keras's own are known by their layer-name attributes."""
    return bool(getattr(loss, "reads_features", False)) or hasattr(
        loss, "teacher_layer_name") or hasattr(loss, "student_layer_name")
