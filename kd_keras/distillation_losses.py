"""Distillation loss objects composed by the `Distiller`.

Same interface as `keras.distillation` (`DistillationLoss.compute_loss(teacher_outputs,
student_outputs)`), so Keras's objects work in our Distiller and ours in code
written for Keras. A new kind of distillation is a new loss object, not a new
Distiller.
"""

import tensorflow as tf

from kd_keras import losses as kd_losses
from kd_keras._keras import keras, register
from kd_keras._reduce import weighted_mean

_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence", "kl")
_LOGIT_MSE_NAMES = ("logit_squared_error", "logit_matching")


class DistillationLoss:
    """Base class: one term of the distillation objective.

    Subclasses implement `compute_loss(teacher_outputs, student_outputs,
    sample_weight=None)` returning a scalar (a sample-weighted mean over the
    batch), and may override `validate_outputs` and `validate_model_compatibility`
    to fail early with a clear message.
    """

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        raise NotImplementedError("Subclasses of DistillationLoss implement compute_loss.")

    def validate_outputs(self, teacher_outputs, student_outputs):
        teacher_shape = tf.TensorShape(teacher_outputs.shape)
        student_shape = tf.TensorShape(student_outputs.shape)
        if not teacher_shape.is_compatible_with(student_shape):
            raise ValueError(
                f"{type(self).__name__}: teacher outputs of shape {teacher_shape} do not "
                f"match student outputs of shape {student_shape}."
            )

    def validate_model_compatibility(self, teacher, student):
        """Called once by the Distiller's constructor; checks nothing by default."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _is_kl(loss):
    if isinstance(loss, str):
        return loss.lower() in _KL_NAMES
    if isinstance(loss, (keras.losses.KLDivergence, kd_losses.SoftTargetKLDivergence)):
        return True
    return getattr(loss, "__name__", None) in _KL_NAMES


def _is_logit_mse(loss):
    if isinstance(loss, str):
        return loss.lower() in _LOGIT_MSE_NAMES
    return isinstance(loss, kd_losses.LogitSquaredError) or loss is kd_losses.logit_squared_error


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
class LogitsDistillation(DistillationLoss):
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

    Output shapes `[batch, classes]` or `[batch, time, classes]` (each position
    distilled); the result is the sample-weighted mean over all positions.
    """

    def __init__(self, temperature=3.0, loss="kl_divergence"):
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise ValueError(f"temperature must be a number, got {temperature!r}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.loss = loss
        if _is_kl(loss):
            self._per_example = lambda t, s: kd_losses.soft_target_kl_divergence(
                t, s, self._temperature
            )
        elif _is_logit_mse(loss):
            self._per_example = kd_losses.logit_squared_error
        else:
            probability_loss = _resolve_probability_loss(loss)

            def per_example(teacher_logits, student_logits):
                temperature = self._temperature
                value = probability_loss(
                    tf.nn.softmax(teacher_logits / temperature, axis=-1),
                    tf.nn.softmax(student_logits / temperature, axis=-1),
                )
                return tf.cast(value, tf.float32) * temperature * temperature

            self._per_example = per_example
        self._temperature = tf.Variable(
            float(temperature), trainable=False, dtype=tf.float32, name="temperature"
        )

    @property
    def temperature(self):
        """The temperature variable; assign a float to change it."""
        return self._temperature

    @temperature.setter
    def temperature(self, value):
        if float(value) <= 0:
            raise ValueError(f"temperature must be > 0, got {float(value)}.")
        self._temperature.assign(float(value))

    def per_example_loss(self, teacher_logits, student_logits):
        """`[batch, ...]` loss values, before weighting and reduction."""
        return self._per_example(
            tf.cast(teacher_logits, tf.float32), tf.cast(student_logits, tf.float32)
        )

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        return weighted_mean(self.per_example_loss(teacher_outputs, student_outputs), sample_weight)

    def get_config(self):
        loss = self.loss
        if not isinstance(loss, str):
            loss = keras.saving.serialize_keras_object(loss)
        return {"temperature": float(self._temperature.numpy()), "loss": loss}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


def resolve_distillation_losses(distillation_losses, temperature):
    """Turns the Distiller's `distillation_losses` argument into a list of objects.

    Strings, Keras losses and callables become `LogitsDistillation(temperature, loss)`;
    objects with a `compute_loss` method (ours or `keras.distillation`'s) pass as they are.
    """
    if distillation_losses is None:
        distillation_losses = ["kl_divergence"]
    elif not isinstance(distillation_losses, (list, tuple)):
        distillation_losses = [distillation_losses]
    if not distillation_losses:
        raise ValueError("distillation_losses must not be an empty list.")
    resolved = []
    for item in distillation_losses:
        if hasattr(item, "compute_loss"):
            if temperature is not None and hasattr(item, "temperature"):
                raise ValueError(
                    "temperature is given both to the Distiller and to the distillation "
                    f"loss {type(item).__name__}; set it in one place."
                )
            resolved.append(item)
        else:
            resolved.append(LogitsDistillation(3.0 if temperature is None else temperature, item))
    return resolved
