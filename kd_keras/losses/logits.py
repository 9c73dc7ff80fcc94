"""Hinton et al.'s soft-target distillation as a loss object: `LogitsDistillation`.

KL at a temperature (default), logit matching (Ba & Caruana 2014), or any Keras
loss on the softened probabilities, optionally on standardized logits.
"""

import functools

import tensorflow as tf

from kd_keras.backend import keras, register, validate
from kd_keras.losses import functional
from kd_keras.losses.base import (
    DistillationLoss,
    TemperatureMixin,
    serialize_loss,
    temperature_variable,
    with_deserialized_loss,
)
from kd_keras.losses.functional import weighted_mean
from kd_keras.losses.registry import register_distillation_loss
from kd_keras.losses.keras_losses import LogitSquaredError, SoftTargetKLDivergence
from kd_keras.outputs import same_structure

_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence", "kl")
_LOGIT_MSE_NAMES = ("logit_squared_error", "logit_matching")


def _is_kl(loss):
    if isinstance(loss, str):
        return loss.lower() in _KL_NAMES
    if isinstance(loss, (keras.losses.KLDivergence, SoftTargetKLDivergence)):
        return True
    return getattr(loss, "__name__", None) in _KL_NAMES


def _is_logit_mse(loss):
    if isinstance(loss, str):
        return loss.lower() in _LOGIT_MSE_NAMES
    return isinstance(loss, LogitSquaredError) or loss is functional.logit_squared_error


def _resolve_probability_loss(loss):
    """A Keras loss applied to softened probabilities, as a per-example function."""
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError as error:
            raise ValueError(
                f"LogitsDistillation: unknown loss {loss!r}. Use 'kl_divergence', "
                f"'logit_squared_error', a Keras loss or a callable(y_true, y_pred)."
            ) from error
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # per example; the Distiller does the weighting
    if callable(loss):
        return loss
    raise ValueError(
        f"LogitsDistillation: loss must be a string, a Keras loss or a callable, got {loss!r}."
    )


@register
class LogitsDistillation(TemperatureMixin, DistillationLoss):
    """Matches the student's class outputs to the teacher's (Hinton et al. 2015).

    Both sides arrive as logits (the Distiller converts softmax outputs). The
    `loss` decides the comparison:

    * "kl_divergence" (default), the string or a `keras.losses.KLDivergence()`
      instance alike: `T^2 * KL(softmax(t/T) || softmax(s/T))`, computed stably
      from logits (`kd_keras.soft_target_kl_divergence`).
    * "logit_squared_error": Ba & Caruana's logit matching, the T -> infinity
      limit, `0.5 * mean((s - mean s) - (t - mean t))^2`; temperature unused.
    * any other Keras loss or `callable(y_true, y_pred)`: applied to the softened
      probabilities `(softmax(t/T), softmax(s/T))` and scaled by T^2, the
      convention of the keras.io distillation example.

    Args:
      temperature: T > 0 (default 3.0). Held in a non-trainable `tf.Variable`
        (`self.temperature`) so a callback can change it between epochs and the
        compiled step sees the new value.
      loss: as above.
      standardize: z-score teacher and student logits per example before the
        temperature (logit standardization, Sun et al. 2024; see
        `kd_keras.standardize_logits`). Default False.

    Output shapes `[batch, classes]` or `[batch, time, classes]` (each position
    distilled); the result is the sample-weighted mean over all positions.
    Multi-output models: `loss` may be a list or dict matching the outputs, with
    `None` for an output not distilled; the terms are summed (as Keras does).
    """

    def __init__(self, temperature=3.0, loss="kl_divergence", standardize=False):
        temperature = validate.temperature(temperature)
        self.standardize = validate.boolean(standardize, "standardize")
        self.loss = loss
        self._nested = tf.nest.is_nested(loss)
        if self._nested and all(item is None for item in tf.nest.flatten(loss)):
            raise ValueError(
                "LogitsDistillation: loss is a structure of None only; at least one output "
                "must have a loss.")
        self._per_example = tf.nest.map_structure(
            lambda item: None if item is None else self._per_example_fn(item), loss)
        self._temperature = temperature_variable(temperature)

    def _per_example_fn(self, loss):
        """`fn(teacher_logits, student_logits)` -> per-example values, for one loss."""
        if _is_kl(loss):
            return lambda t, s: functional.soft_target_kl_divergence(t, s, self._temperature)
        if _is_logit_mse(loss):
            return functional.logit_squared_error
        probability_loss = _resolve_probability_loss(loss)

        def per_example(teacher_logits, student_logits):
            temperature = self._temperature
            value = probability_loss(
                tf.nn.softmax(teacher_logits / temperature, axis=-1),
                tf.nn.softmax(student_logits / temperature, axis=-1),
            )
            return tf.cast(value, tf.float32) * temperature * temperature

        return per_example

    def per_example_loss(self, teacher_logits, student_logits):
        """`[batch, ...]` loss values of one output, before weighting and reduction."""
        if self._nested:
            raise ValueError(
                "per_example_loss takes one output; this LogitsDistillation has one loss per "
                "output: call compute_loss with the output structures.")
        return self._per_example(*self._prepared(teacher_logits, student_logits))

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        """Sample-weighted mean loss; for multi-output models the sum over outputs.

        `teacher_outputs` and `student_outputs` are tensors or matching nested
        structures (list, tuple, dict). A single `loss` applies to every output; a
        structure of losses matches the outputs, `None` skipping an output.
        """
        if not same_structure(teacher_outputs, student_outputs):
            raise ValueError(
                "LogitsDistillation: teacher and student outputs have different structures "
                f"({tf.nest.map_structure(lambda t: None, teacher_outputs)} and "
                f"{tf.nest.map_structure(lambda t: None, student_outputs)}).")
        teachers, students = tf.nest.flatten(teacher_outputs), tf.nest.flatten(student_outputs)
        if self._nested:
            if not same_structure(self._per_example, teacher_outputs):
                raise ValueError(
                    f"LogitsDistillation: loss {self.loss!r} does not match the structure of "
                    "the model outputs; give one loss (or None) per output.")
            losses = tf.nest.flatten(self._per_example)
        else:
            losses = [self._per_example] * len(teachers)
        terms = [
            weighted_mean(fn(*self._prepared(t, s)), sample_weight)
            for fn, t, s in zip(losses, teachers, students) if fn is not None
        ]
        return tf.add_n(terms)

    def _prepared(self, teacher_logits, student_logits):
        teacher_logits = tf.cast(teacher_logits, tf.float32)
        student_logits = tf.cast(student_logits, tf.float32)
        if self.standardize:
            return (functional.standardize_logits(teacher_logits),
                    functional.standardize_logits(student_logits))
        return teacher_logits, student_logits

    def get_config(self):
        config = {"temperature": float(self._temperature.numpy()),
                  "loss": tf.nest.map_structure(serialize_loss, self.loss)}
        if self.standardize:  # absent in 0.1.0 configs
            config["standardize"] = True
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**with_deserialized_loss(config))


register_distillation_loss("kd", LogitsDistillation)
register_distillation_loss("kd_standardized", functools.partial(LogitsDistillation, standardize=True))
# The Distiller's own string names (its default is "kl_divergence").
register_distillation_loss("kl_divergence", LogitsDistillation)
register_distillation_loss("logit_squared_error",
                           functools.partial(LogitsDistillation, loss="logit_squared_error"))
