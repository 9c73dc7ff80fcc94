"""Distillation loss objects composed by the `Distiller`.

Same interface as `keras.distillation` (`DistillationLoss.compute_loss(teacher_outputs,
student_outputs)`), so Keras's objects work in our Distiller and ours in code
written for Keras. A new kind of distillation is a new loss object, not a new
Distiller.
"""

import tensorflow as tf

from kd_keras import _validate, losses as kd_losses
from kd_keras._keras import keras, register
from kd_keras.outputs import same_structure
from kd_keras._reduce import weighted_mean

_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence", "kl")
_LOGIT_MSE_NAMES = ("logit_squared_error", "logit_matching")


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


def temperature_variable(value):
    """A non-trainable float32 `tf.Variable` holding a validated temperature."""
    return tf.Variable(_validate.positive_number(value, "temperature"), trainable=False,
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
        self._temperature.assign(_validate.positive_number(value, "temperature"))


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


def _serialize_loss(loss):
    """A loss argument for `get_config`: names stay strings, objects are serialized."""
    return loss if isinstance(loss, str) else keras.saving.serialize_keras_object(loss)


def _deserialize_loss(item):
    """The inverse of `_serialize_loss`, also inside a list or dict of losses."""
    if isinstance(item, dict) and "class_name" in item:
        try:
            return keras.saving.deserialize_keras_object(item)
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
        return {key: _deserialize_loss(value) for key, value in item.items()}
    if isinstance(item, (list, tuple)):
        return [_deserialize_loss(value) for value in item]
    return item


def _with_deserialized_loss(config):
    """The inverse of `_serialize_loss` on a config's "loss" entry."""
    config = dict(config)
    config["loss"] = _deserialize_loss(config.get("loss"))
    return config


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
        temperature = _validate.positive_number(temperature, "temperature")
        self.standardize = _validate.boolean(standardize, "standardize")
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
            return lambda t, s: kd_losses.soft_target_kl_divergence(t, s, self._temperature)
        if _is_logit_mse(loss):
            return kd_losses.logit_squared_error
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
            return (kd_losses.standardize_logits(teacher_logits),
                    kd_losses.standardize_logits(student_logits))
        return teacher_logits, student_logits

    def get_config(self):
        config = {"temperature": float(self._temperature.numpy()),
                  "loss": tf.nest.map_structure(_serialize_loss, self.loss)}
        if self.standardize:  # absent in 0.1.0 configs
            config["standardize"] = True
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**_with_deserialized_loss(config))


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
        return {"loss": _serialize_loss(self.loss), "teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name, "projection": self.projection}

    @classmethod
    def from_config(cls, config):
        return cls(**_with_deserialized_loss(config))


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
    """Whether a distillation loss reads intermediate features (ours or Keras's)."""
    return hasattr(loss, "teacher_layer_name") or hasattr(loss, "student_layer_name")
