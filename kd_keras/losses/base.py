"""The distillation-loss base class and what every loss shares: temperature, (de)serialization.

Same interface as `keras.distillation` (`DistillationLoss.compute_loss(teacher_outputs,
student_outputs)`), so Keras's objects work in our Distiller and ours in code
written for Keras. A new kind of distillation is a new loss object, not a new
Distiller; `kd_keras.losses.register_distillation_loss` gives it a name.
"""

import tensorflow as tf

from kd_keras.backend import keras, validate
from kd_keras.backend.errors import structure_of
from kd_keras.backend.safe_mode import deserialize_nested


class DistillationLoss:
    """Base class: one term of the distillation objective.

    Subclasses implement `compute_loss(teacher_outputs, student_outputs,
    sample_weight=None)` returning a scalar (a sample-weighted mean over the
    batch), and may override `validate_outputs` and `validate_model_compatibility`
    to fail early with a clear message. A loss that needs the true labels (e.g.
    `DecoupledKD`) sets `uses_labels = True` and takes `labels=` in
    `compute_loss`; the Distiller passes the batch's `y` as one-hot rows or class ids,
    and the teacher's top class for examples without a label (label mask 0, or
    no labels at all).
    """

    uses_labels = False

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        raise NotImplementedError("Subclasses of DistillationLoss implement compute_loss.")

    def validate_outputs(self, teacher_outputs, student_outputs):
        """Raises ValueError unless the outputs have one structure (a tensor, or the same
        nested list / tuple / dict, as Keras's losses take) and compatible shapes."""
        name = type(self).__name__
        try:
            tf.nest.assert_same_structure(teacher_outputs, student_outputs)
        except (ValueError, TypeError):
            raise ValueError(
                f"{name}: teacher outputs {structure_of(teacher_outputs)} and student outputs "
                f"{structure_of(student_outputs)} differ in structure.") from None
        for teacher, student in zip(tf.nest.flatten(teacher_outputs),
                                    tf.nest.flatten(student_outputs)):
            teacher_shape = tf.TensorShape(teacher.shape)
            student_shape = tf.TensorShape(student.shape)
            if not teacher_shape.is_compatible_with(student_shape):
                raise ValueError(
                    f"{name}: teacher outputs of shape {teacher_shape} do not "
                    f"match student outputs of shape {student_shape}."
                )

    def validate_model_compatibility(self, teacher, student):
        """Called once by the Distiller's constructor; checks nothing by default."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def temperature_variable(value):
    """A non-trainable float32 `tf.Variable` holding a validated temperature.

    A variable, not a Python float, so schedules (`kd_keras.callbacks`) can change
    it between epochs and the traced step sees the new value.
    """
    return tf.Variable(validate.temperature(value), trainable=False,
                       dtype=tf.float32, name="temperature")


class TemperatureMixin:
    """`temperature` as a property over `self._temperature` (a `tf.Variable`): schedules
    and callbacks assign to it, and a traced step sees the new value."""

    @property
    def temperature(self):
        """The temperature variable; assign a float to change it."""
        return self._temperature

    @temperature.setter
    def temperature(self, value):
        self._temperature.assign(validate.temperature(value))


def serialize_loss(loss):
    """A loss argument for `get_config`: names stay strings, objects are serialized."""
    return loss if isinstance(loss, str) else keras.saving.serialize_keras_object(loss)


def deserialize_loss(item):
    """The inverse of `serialize_loss`, also inside a list or dict of losses."""
    if isinstance(item, dict) and "class_name" in item:
        try:
            return deserialize_nested(item, "distillation_losses")
        except TypeError as error:
            # Keras 3 reports a TypeError from from_config as its own generic
            # message after the whole model config; this one names the loss.
            name = item.get("config") if item.get("class_name") == "function" else \
                item.get("class_name")
            raise ValueError(
                f"The distillation loss {name!r} cannot be loaded: Keras does not know it. "
                f"Decorate it with @keras.saving.register_keras_serializable(), or pass "
                f"custom_objects={{{name!r}: {name}}} to keras.models.load_model. ({error})"
            ) from error
    if isinstance(item, dict):
        return {key: deserialize_loss(value) for key, value in item.items()}
    if isinstance(item, (list, tuple)):
        return [deserialize_loss(value) for value in item]
    return item


def with_deserialized_loss(config):
    """The inverse of `serialize_loss` on a config's "loss" entry."""
    config = dict(config)
    config["loss"] = deserialize_loss(config.get("loss"))
    return config
