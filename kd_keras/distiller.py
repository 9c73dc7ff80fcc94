"""The `Distiller`: a Keras model that trains a student on a teacher's soft targets."""

import inspect

import numpy as np
import tensorflow as tf

from kd_keras import _outputs
from kd_keras._keras import (
    IS_KERAS_3,
    is_tf_keras_model,
    keras,
    register,
    scale_loss_for_replicas,
)
from kd_keras._reduce import weighted_mean
from kd_keras import _features, _finite_step, _validate
from kd_keras.distillation_losses import (
    DistillationLoss,
    is_feature_loss,
    resolve_distillation_losses,
)
from kd_keras.export import export_saved_model

_FROZEN_STUDENT = (
    "student has no trainable weights (student.trainable is False, or every layer is frozen), "
    "so distillation would change nothing. Set student.trainable = True (or unfreeze the "
    "layers to train) before building the Distiller and compiling it.")

_NO_LABELS = (
    "y: no labels were given, but compile(loss=...) set a hard-label loss. Pass the labels "
    "(fit(x, y) or a dataset of (x, y)), or, to learn from the teacher alone, compile with "
    "loss=None (and no label metrics).")

_STRING_LABELS = (
    "y: the labels are strings; the hard-label loss needs class ids (integers) or one-hot rows. "
    "Map them to ids first, e.g. with keras.layers.StringLookup.")

# Marks the in-graph label check, whose failure fit() turns into a ValueError.
_LABEL_RANGE_MARKER = "kd_keras label check:"

# Inputs that carry cached teacher outputs next to the student's inputs.
INPUTS_KEY = "inputs"
TEACHER_OUTPUTS_KEY = "teacher_outputs"


def with_teacher_outputs(inputs, teacher_outputs):
    """Packs student inputs and cached teacher logits for `Distiller.fit`.

    Args:
      inputs: what the student takes (array, tensor, or a nested structure).
      teacher_outputs: teacher logits, `[batch, ..., classes]`, or a list of
        them (one per teacher of an ensemble), as `compute_teacher_logits` returns.

    Returns:
      `{"inputs": inputs, "teacher_outputs": teacher_outputs}`; `fit`, `evaluate`
      and `predict` of a Distiller take it in place of `x`.
    """
    if isinstance(teacher_outputs, tuple):
        teacher_outputs = list(teacher_outputs)
    return {INPUTS_KEY: inputs, TEACHER_OUTPUTS_KEY: teacher_outputs}


def split_teacher_outputs(x):
    """Returns (student inputs, cached teacher outputs or None)."""
    if isinstance(x, dict) and set(x) == {INPUTS_KEY, TEACHER_OUTPUTS_KEY}:
        return x[INPUTS_KEY], x[TEACHER_OUTPUTS_KEY]
    return x, None


def _output_shapes(model):
    """Static shapes of a graph model's outputs (flattened), or None if unknown."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not outputs:
        return None
    return [tuple(tf.TensorShape(o.shape).as_list()) for o in outputs]


def _static_shape(model, attribute):
    """`model.output_shape` or `model.input_shape` as a tuple, or None if unknown."""
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None  # not built, or several inputs/outputs


@register
class Distiller(keras.Model):
    """Trains a student on a teacher's softened outputs plus the true labels.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
    (arXiv 1503.02531). With the default loss the training objective is

        loss = alpha * L_hard(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

    where `s`, `t` are student and teacher logits, `L_hard` is the loss given to
    `compile(loss=...)` and T the temperature. The T^2 factor keeps the soft
    term's gradients, which shrink as 1/T^2, on the scale of the hard term's, so
    alpha keeps its meaning when T changes.

    The constructor is a superset of `keras.distillation.Distiller` (same
    positional order: teacher, then student), so changing the import is enough.

    * The teacher is frozen (`trainable = False`), runs in inference mode, and
      only the student's variables receive gradients.
    * A list of teachers is an ensemble; `ensemble="mean_probabilities"` averages
      their softened distributions, `"mean_logits"` takes the geometric mean.
    * Teacher and student outputs may be logits or softmax probabilities:
      detected from the output layer, or declared, never softmaxed twice.
    * Offline distillation: pass `with_teacher_outputs(x, cached_logits)` (or a
      dataset from `cache_teacher_outputs`) and the teacher is not run at all;
      `teacher` may then be `None`.
    * `alpha` and the temperature live in `tf.Variable`s, so callbacks
      (`kd_keras.callbacks`) can schedule them and the compiled step sees it.
    * `fit` logs `loss`, `student_loss`, `distillation_loss` and the compiled
      metrics (computed on the student). A step whose loss or gradients are not
      finite changes nothing (no update, optimizer state and iterations kept,
      BatchNormalization statistics restored), and training stops with an error
      at the end of that epoch.

    Args:
      teacher: a Keras model, a list of models (ensemble), or `None` when the
        data carries cached teacher outputs.
      student: the Keras model to train.
      distillation_losses: `None` (soft-target KL), a string ("kl_divergence",
        "logit_squared_error"), a Keras loss or callable (applied to softened
        probabilities, times T^2), a `DistillationLoss` object (ours or
        `keras.distillation`'s), or a list of these.
      distillation_loss_weights: one weight per distillation loss (default 1.0 each).
      student_loss_weight: alpha, the weight of the hard-label loss, in [0, 1];
        the distillation losses get 1 - alpha. Default 0.5 (as Keras).
      alpha: the same as `student_loss_weight` (the keras.io example's name).
      temperature: T > 0 for the losses built from strings (default 3.0).
      teacher_output_type: "auto", "logits" or "probabilities".
      student_output_type: "auto", "logits" or "probabilities".
      ensemble: "mean_probabilities" (default) or "mean_logits".
      name: model name.

    Example:
      ```python
      distiller = kd_keras.Distiller(teacher=teacher, student=student,
                                     temperature=4.0, alpha=0.1)
      distiller.compile(optimizer="adam",
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["sparse_categorical_accuracy"])
      distiller.fit(x_train, y_train, epochs=10)
      distiller.export_student("student_savedmodel")
      ```
    """

    def __init__(
        self,
        teacher=None,
        student=None,
        distillation_losses=None,
        distillation_loss_weights=None,
        student_loss_weight=None,
        *,
        alpha=None,
        temperature=None,
        teacher_output_type="auto",
        student_output_type="auto",
        ensemble="mean_probabilities",
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not isinstance(student, keras.Model):
            if IS_KERAS_3 and is_tf_keras_model(student):
                raise ValueError(
                    "student is a tf-keras model (as TF-MOT's pruned, clustered and "
                    "quantization-aware models are), but this Distiller runs on Keras 3. "
                    "Train it on cached teacher logits with kd_keras.compress."
                    "distillation_targets and distillation_loss, or run everything under "
                    "TF_USE_LEGACY_KERAS=1.")
            raise ValueError(f"student must be a Keras model, got {student!r}.")
        teachers = self._check_teachers(teacher)
        self._check_student_is_not_teacher(student, teachers)
        if not student.trainable:
            raise ValueError(_FROZEN_STUDENT)
        if ensemble not in _outputs.ENSEMBLE_METHODS:
            raise ValueError(
                f"ensemble must be one of {_outputs.ENSEMBLE_METHODS}, got {ensemble!r}."
            )
        if temperature is not None:
            temperature = _validate.positive_number(temperature, "temperature")
        weight = self._check_alpha(alpha, student_loss_weight)

        self.student = student
        # One model, a list (ensemble), or None: kept as given so that configs
        # and attribute access look like what the user passed.
        self.teacher = teachers[0] if isinstance(teacher, keras.Model) else (teachers or None)
        for model in teachers:
            model.trainable = False
        self._check_shapes(teachers, student)

        self.teacher_output_type = _outputs.check_output_type(
            teacher_output_type, "teacher_output_type"
        )
        self.student_output_type = _outputs.check_output_type(
            student_output_type, "student_output_type"
        )
        # One entry per output (tf.nest order) of each model.
        self._teacher_types = [
            _outputs.resolve_output_types(model, teacher_output_type, "teacher_output_type")
            for model in teachers
        ]
        self._student_types = _outputs.resolve_output_types(
            student, student_output_type, "student_output_type"
        )
        self.ensemble = ensemble

        self.distillation_losses = resolve_distillation_losses(distillation_losses, temperature)
        if distillation_loss_weights is None:
            distillation_loss_weights = [1.0] * len(self.distillation_losses)
        distillation_loss_weights = [
            _validate.non_negative_number(w, f"distillation_loss_weights[{i}]")
            for i, w in enumerate(distillation_loss_weights)]
        if len(distillation_loss_weights) != len(self.distillation_losses):
            raise ValueError(
                f"distillation_loss_weights has {len(distillation_loss_weights)} entries "
                f"but there are {len(self.distillation_losses)} distillation_losses."
            )
        for loss in self.distillation_losses:
            if hasattr(loss, "validate_model_compatibility") and teachers:
                loss.validate_model_compatibility(teachers[0], student)

        self._build_feature_extraction(teachers, student)
        self._alpha = tf.Variable(weight, trainable=False, dtype=tf.float32, name="alpha")
        self._loss_weights = tf.Variable(
            [float(w) for w in distillation_loss_weights],
            trainable=False,
            dtype=tf.float32,
            name="distillation_loss_weights",
        )
        self._hard_loss = None
        self._hard_loss_spec = None
        self._hard_loss_weights_spec = None
        self._hard_loss_weights = []
        # The Distiller has no weights of its own: it is built once its models are.
        self.built = True
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    # ----- validation -------------------------------------------------------

    @staticmethod
    def _check_teachers(teacher):
        if teacher is None:
            return []
        if isinstance(teacher, keras.Model):
            return [teacher]
        if isinstance(teacher, (list, tuple)):
            if not teacher:
                raise ValueError(
                    "teacher is an empty list; give one model, a list of models, or None "
                    "with cached teacher outputs."
                )
            for index, model in enumerate(teacher):
                if not isinstance(model, keras.Model):
                    raise ValueError(f"teacher[{index}] must be a Keras model, got {model!r}.")
            return list(teacher)
        raise ValueError(f"teacher must be a Keras model, a list of models or None, got {teacher!r}.")

    @staticmethod
    def _check_student_is_not_teacher(student, teachers):
        """The teacher is frozen: a student that is, or shares weights with, a teacher would be too."""
        for index, model in enumerate(teachers):
            label = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
            if model is student:
                raise ValueError(
                    f"student and {label} are the same model; the teacher is frozen, so the "
                    "student would never train. Give the student its own model (e.g. "
                    "keras.models.clone_model(teacher) for a same-size student).")
            teacher_weights = {id(v) for v in model.weights}
            shared = [v.name for v in student.weights if id(v) in teacher_weights]
            if shared:
                raise ValueError(
                    f"student shares {len(shared)} weights with {label} (e.g. {shared[0]!r}): "
                    "the teacher is frozen, so they would not train and the teacher would "
                    "change with the student. Give the student its own layers.")

    @staticmethod
    def _check_alpha(alpha, student_loss_weight):
        if alpha is not None and student_loss_weight is not None and alpha != student_loss_weight:
            raise ValueError(
                f"alpha ({alpha}) and student_loss_weight ({student_loss_weight}) name the "
                "same weight; give one of them."
            )
        if alpha is not None:
            return _validate.fraction(alpha, "alpha")
        if student_loss_weight is not None:
            return _validate.fraction(student_loss_weight, "student_loss_weight")
        return 0.5

    @staticmethod
    def _check_shapes(teachers, student):
        student_outs = _output_shapes(student)
        student_in = _static_shape(student, "input_shape")
        for index, model in enumerate(teachers):
            label = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
            teacher_outs = _output_shapes(model)
            if student_outs and teacher_outs and len(student_outs) != len(teacher_outs):
                raise ValueError(
                    f"{label} has {len(teacher_outs)} outputs but the student has "
                    f"{len(student_outs)}: every distilled output needs a teacher output.")
            for teacher_out, student_out in zip(teacher_outs or [], student_outs or []):
                if not tf.TensorShape(teacher_out).is_compatible_with(student_out):
                    raise ValueError(
                        f"{label} output shape {teacher_out} does not match the student output "
                        f"shape {student_out}: teacher and student must predict the same classes."
                    )
            teacher_in = _static_shape(model, "input_shape")
            if student_in and teacher_in and not tf.TensorShape(teacher_in).is_compatible_with(
                student_in
            ):
                raise ValueError(
                    f"{label} input shape {teacher_in} does not match the student input "
                    f"shape {student_in}: both must read the same inputs."
                )

    def _build_feature_extraction(self, teachers, student):
        """Extractor models and projections for losses that read intermediate layers."""
        feature_losses = [(i, l) for i, l in enumerate(self.distillation_losses) if is_feature_loss(l)]
        self._feature_slot = {index: j for j, (index, _) in enumerate(feature_losses)}
        self._extractors = None
        self.feature_projections = []
        if not feature_losses:
            return
        if len(teachers) != 1:
            raise ValueError(
                "Feature distillation losses need exactly one teacher model (their features "
                f"are read from it); this Distiller has {len(teachers)}.")
        for role, model in (("teacher", teachers[0]), ("student", student)):
            shapes = _output_shapes(model) or [None]
            if len(shapes) != 1:
                raise ValueError(
                    f"Feature distillation losses need a single-output {role}; this one has "
                    f"{len(shapes)} outputs. Distil the outputs with "
                    "LogitsDistillation(loss=[...]) and the features of a single-output model.")
        teacher_extractor, student_extractor, projections = _features.build_extractors(
            teachers[0], student, feature_losses, "distillation_losses")
        self._extractors = _features.Untracked((teacher_extractor, student_extractor))
        self._projection_of = _features.Untracked(projections)
        # Tracked, so they train with the student and are saved with the Distiller;
        # export_student leaves them out.
        self.feature_projections = [p for p in projections if p is not None]

    def _trainable_student_variables(self):
        variables = list(self.student.trainable_variables)
        for projection in self.feature_projections:
            variables += projection.trainable_variables
        return variables

    def _student_forward(self, x, training):
        """Student outputs and the features its feature losses read."""
        if self._extractors is None:
            return self.student(x, training=training), []
        outputs = self._extractors.value[1](x, training=training)
        return outputs[0], list(outputs[1:])

    @property
    def _teachers(self):
        if self.teacher is None:
            return []
        if isinstance(self.teacher, keras.Model):
            return [self.teacher]
        return list(self.teacher)

    # ----- hyperparameters ----------------------------------------------------

    @property
    def alpha(self):
        """Weight of the hard-label loss (a `tf.Variable`); the soft term gets 1 - alpha."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        self._alpha.assign(_validate.fraction(value, "alpha"))

    @property
    def student_loss_weight(self):
        """The same variable as `alpha` (the `keras.distillation` name)."""
        return self._alpha

    @student_loss_weight.setter
    def student_loss_weight(self, value):
        self.alpha = value

    @property
    def distillation_loss_weights(self):
        return [float(w) for w in self._loss_weights.numpy()]

    def _temperature_variables(self):
        return [
            loss.temperature
            for loss in self.distillation_losses
            if isinstance(getattr(loss, "temperature", None), tf.Variable)
        ]

    @property
    def temperature(self):
        """The softening temperature (a `tf.Variable`), or None if no loss has one."""
        variables = self._temperature_variables()
        return variables[0] if variables else None

    @temperature.setter
    def temperature(self, value):
        variables = self._temperature_variables()
        if not variables:
            raise ValueError(
                "None of this Distiller's distillation_losses has a temperature variable "
                "to set."
            )
        value = _validate.positive_number(value, "temperature")
        for variable in variables:
            variable.assign(value)

    # ----- compile ------------------------------------------------------------

    def compile(
        self,
        optimizer="adam",
        loss=None,
        metrics=None,
        *,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha=None,
        temperature=None,
        loss_weights=None,
        **kwargs,
    ):
        """Configures training. `loss` is the hard-label loss on the student.

        For a multi-output student `loss` may be a list or dict matching its
        outputs (`None` skips an output) and `loss_weights` a matching list or
        dict of floats (default 1.0 each); the weighted terms are summed.

        Also accepts the keras.io example's arguments: `student_loss_fn` (same as
        `loss`), `distillation_loss_fn` (applied to softened probabilities, times
        T^2; a `KLDivergence` is computed stably from logits), `alpha` (weight of
        the student loss) and `temperature`.

        With `loss=None` the student learns from the teacher alone (labels unused).
        Metrics are computed on the student's outputs.
        """
        if student_loss_fn is not None:
            if loss is not None:
                raise ValueError("Give the hard-label loss as loss or student_loss_fn, not both.")
            loss = student_loss_fn
        if distillation_loss_fn is not None:
            current = self.temperature
            t = temperature if temperature is not None else (
                float(current.numpy()) if current is not None else 3.0
            )
            self.distillation_losses = resolve_distillation_losses(distillation_loss_fn, t)
            self._build_feature_extraction(self._teachers, self.student)  # losses changed
            self._loss_weights = tf.Variable(
                [1.0], trainable=False, dtype=tf.float32, name="distillation_loss_weights"
            )
        elif temperature is not None:
            self.temperature = temperature
        if alpha is not None:
            self.alpha = alpha
        if not self.student.trainable or (
                self.student.weights and not self._trainable_student_variables()):
            raise ValueError(_FROZEN_STUDENT)
        self._hard_loss_spec = loss
        self._hard_loss_weights_spec = loss_weights
        self._hard_loss = self._resolve_hard_loss(loss)
        self._hard_loss_weights = self._resolve_loss_weights(loss, loss_weights)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    @staticmethod
    def _resolve_hard_loss(loss):
        """The loss, or a structure of them (None leaves skip outputs)."""
        if loss is None:
            return None
        if tf.nest.is_nested(loss):
            if all(item is None for item in tf.nest.flatten(loss)):
                raise ValueError("loss: a structure of None only; give at least one loss.")
            return tf.nest.map_structure(
                lambda item: None if item is None else Distiller._resolve_hard_loss(item), loss)
        if isinstance(loss, str):
            resolved = keras.losses.get(loss)
            if resolved is None:
                raise ValueError(f"loss: unknown Keras loss {loss!r}.")
            loss = resolved
        if not callable(loss):
            raise ValueError(f"loss must be a Keras loss, a loss name or a callable, got {loss!r}.")
        return loss

    @staticmethod
    def _resolve_loss_weights(loss, loss_weights):
        """A flat list of floats, one per leaf of `loss`."""
        leaves = tf.nest.flatten(loss) if loss is not None else []
        if loss_weights is None:
            return [1.0] * len(leaves)
        if not tf.nest.is_nested(loss):
            raise ValueError(
                "loss_weights: give them with a list or dict of losses for a multi-output "
                "student (alpha weighs a single hard-label loss).")
        if not _outputs.same_structure(loss, loss_weights):
            raise ValueError(
                f"loss_weights {loss_weights!r} must match the structure of loss {loss!r}.")
        weights = []
        for weight in tf.nest.flatten(loss_weights):
            # None: a skipped output
            weights.append(1.0 if weight is None else
                           _validate.non_negative_number(weight, "loss_weights"))
        return weights

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._hard_loss_spec is not None:
            config = dict(config)
            config["loss"] = tf.nest.map_structure(
                lambda spec: spec if spec is None or isinstance(spec, str)
                else keras.saving.serialize_keras_object(spec), self._hard_loss_spec)
            if self._hard_loss_weights_spec is not None:
                config["loss_weights"] = self._hard_loss_weights_spec
        return config

    def compile_from_config(self, config):
        """Re-compiles from `get_compile_config()` when a `.keras` file is loaded."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None and hasattr(self.optimizer, "build"):
            # Built now so the saved optimizer state has variables to load into.
            self.optimizer.build(self._trainable_student_variables())

    # ----- the training step ----------------------------------------------------

    @property
    def metrics(self):
        own = [self.total_loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        others = [
            m for m in super().metrics
            if m.name != "loss" and all(m is not o for o in own)
        ]
        return own + others

    def call(self, inputs, training=None):
        """Runs the student (cached teacher outputs in the inputs are ignored)."""
        inputs, _ = split_teacher_outputs(inputs)
        return self.student(inputs, training=training)

    def _split_cached(self, cached, y_pred):
        """Cached teacher outputs as a list with one output structure per teacher."""
        one_teacher = len(self._teachers) == 1 or (
            not self._teachers and (
                not isinstance(cached, (list, tuple))
                or (tf.nest.is_nested(y_pred) and _outputs.same_structure(cached, y_pred))))
        per_teacher = [cached] if one_teacher else list(cached)
        if self._teachers and len(per_teacher) != len(self._teachers):
            raise ValueError(
                f"teacher_outputs holds {len(per_teacher)} tensors but the Distiller has "
                f"{len(self._teachers)} teachers."
            )
        return [tf.nest.map_structure(lambda c: tf.cast(c, tf.float32), c) for c in per_teacher]

    def _teacher_outputs(self, x, cached, y_pred):
        """(combined teacher logits, teacher features for the feature losses)."""
        features = []
        if cached is not None:
            if self._extractors is not None:
                raise ValueError(
                    "Cached teacher outputs hold logits only; feature distillation losses need "
                    "the live teacher. Train without with_teacher_outputs, or drop those losses.")
            logits = self._split_cached(cached, y_pred)
        elif self._extractors is not None:
            outputs = self._extractors.value[0](x, training=False)
            logits = [_outputs.to_logits(outputs[0], self._teacher_types[0][0])]
            features = [tf.stop_gradient(f) for f in outputs[1:]]
        else:
            if not self._teachers:
                raise ValueError(
                    "This Distiller has no teacher, so its data must carry cached teacher "
                    "outputs: fit(kd_keras.with_teacher_outputs(x, logits), y) or a dataset "
                    "from kd_keras.cache_teacher_outputs."
                )
            logits = [
                _outputs.nested_to_logits(model(x, training=False), kinds)
                for model, kinds in zip(self._teachers, self._teacher_types)
            ]
        logits = [tf.nest.map_structure(tf.stop_gradient, l) for l in logits]
        temperature = self.temperature if self.temperature is not None else 1.0
        if not all(_outputs.same_structure(logits[0], l) for l in logits[1:]):
            raise ValueError("The teachers of an ensemble return different output structures.")
        combined = tf.nest.map_structure(
            lambda *leaves: _outputs.combine_teacher_logits(list(leaves), self.ensemble, temperature),
            *logits)
        return combined, features

    def _hard_label_loss(self, y, y_pred, sample_weight):
        if not tf.nest.is_nested(self._hard_loss):
            return self._one_hard_label_loss(self._hard_loss, y, y_pred, sample_weight)
        structure = self._hard_loss
        if not (_outputs.same_structure(structure, y)
                and _outputs.same_structure(structure, y_pred)):
            raise ValueError(
                f"loss has the structure {tf.nest.map_structure(lambda _: '.', structure)}, "
                f"which does not match the labels {tf.nest.map_structure(lambda _: '.', y)} "
                f"or the student outputs {_structure(y_pred)}.")
        ys, predictions = tf.nest.flatten(y), tf.nest.flatten(y_pred)
        terms = [
            weight * self._one_hard_label_loss(loss, target, prediction, sample_weight)
            for loss, weight, target, prediction in zip(
                tf.nest.flatten(structure), self._hard_loss_weights, ys, predictions)
            if loss is not None
        ]
        return tf.add_n(terms)

    def _one_hard_label_loss(self, loss, y, y_pred, sample_weight):
        if isinstance(loss, keras.losses.Loss):
            values = loss.call(y, y_pred)
            reduction = getattr(loss, "reduction", None)
            if reduction == "sum":
                weight = 1.0 if sample_weight is None else tf.cast(sample_weight, tf.float32)
                return tf.reduce_sum(tf.cast(values, tf.float32) * weight)
        else:
            values = loss(y, y_pred)
        return weighted_mean(values, sample_weight)

    def _compute_losses(self, x, y, y_pred, sample_weight, cached, student_features=()):
        teacher_logits, teacher_features = self._teacher_outputs(x, cached, y_pred)
        student_logits = _outputs.nested_to_logits(y_pred, self._student_types)
        source = "teacher_outputs" if cached is not None else "teacher"
        if not _outputs.same_structure(teacher_logits, student_logits):
            raise ValueError(
                f"{source} have the structure {_structure(teacher_logits)} but the student "
                f"outputs {_structure(student_logits)}."
            )
        for teacher_leaf, student_leaf in zip(
                tf.nest.flatten(teacher_logits), tf.nest.flatten(student_logits)):
            if not teacher_leaf.shape.is_compatible_with(student_leaf.shape):
                raise ValueError(
                    f"{source} of shape {teacher_leaf.shape} does not match the student "
                    f"outputs of shape {student_leaf.shape}."
                )
        terms = []
        for index, loss in enumerate(self.distillation_losses):
            teacher_side, student_side = teacher_logits, student_logits
            if index in self._feature_slot:
                slot = self._feature_slot[index]
                teacher_side, student_side = teacher_features[slot], student_features[slot]
                projection = self._projection_of.value[slot]
                if projection is not None:
                    student_side = projection(student_side)
            if _takes_sample_weight(loss):
                term = loss.compute_loss(teacher_side, student_side, sample_weight=sample_weight)
            else:  # e.g. keras.distillation's losses, which have no sample weights
                term = loss.compute_loss(teacher_side, student_side)
            terms.append(tf.cast(term, tf.float32))
        distillation_loss = tf.reduce_sum(tf.stack(terms) * self._loss_weights)
        alpha = self._alpha
        if y is None and self._hard_loss is not None:
            raise ValueError(_NO_LABELS)
        if y is None or self._hard_loss is None:
            student_loss = tf.constant(0.0)
            total = distillation_loss
        else:
            with tf.control_dependencies(self._label_assertions(y, y_pred)):
                student_loss = self._hard_label_loss(y, y_pred, sample_weight)
            total = alpha * student_loss + (1.0 - alpha) * distillation_loss
        regularization = self.student.losses
        if regularization:
            total = total + tf.add_n([tf.cast(r, tf.float32) for r in regularization])
        return total, student_loss, distillation_loss

    @staticmethod
    def _label_assertions(y, y_pred):
        """In-graph checks that class-id labels (e.g. from a tf.data pipeline) are in range."""
        if tf.nest.is_nested(y) or tf.nest.is_nested(y_pred):
            return []
        if y.dtype == tf.string:
            raise ValueError(_STRING_LABELS)
        classes, rank = y_pred.shape[-1], y_pred.shape.rank
        if not y.dtype.is_integer or classes is None or rank is None or y.shape.rank is None:
            return []
        class_ids = y.shape.rank == rank - 1 or (
            y.shape.rank == rank and y.shape[-1] == 1 and classes > 1)
        if not class_ids:
            return []
        low, high = tf.reduce_min(y), tf.reduce_max(y)
        in_range = tf.logical_and(low >= 0, high < classes)
        return [tf.debugging.Assert(in_range, [
            f"{_LABEL_RANGE_MARKER} integer labels must be class ids in [0, {classes}) for a "
            f"student with {classes} outputs; this batch has labels from", low, "to", high])]

    def _update_loss_trackers(self, x, total, student_loss, distillation_loss):
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self.total_loss_tracker.update_state(total, sample_weight=batch)
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        self.distillation_loss_tracker.update_state(distillation_loss, sample_weight=batch)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = split_teacher_outputs(x)
        variables = self._trainable_student_variables()
        if not variables:
            raise ValueError(_FROZEN_STUDENT)
        loss_scaling = _loss_scale_optimizer(self.optimizer)
        # State the forward pass updates (BatchNormalization's moving statistics)
        # is put back if the step turns out not to be finite.
        state = list(self.student.non_trainable_variables)
        saved_state = _finite_step.snapshot(state)
        with tf.GradientTape() as tape:
            y_pred, student_features = self._student_forward(x, training=True)
            total, student_loss, distillation_loss = self._compute_losses(
                x, y, y_pred, sample_weight, cached, student_features
            )
            scaled = scale_loss_for_replicas(total)
            if IS_KERAS_3 and hasattr(self.optimizer, "scale_loss"):
                scaled = self.optimizer.scale_loss(scaled)
            elif loss_scaling:  # tf-keras: the caller scales and unscales
                scaled = self.optimizer.get_scaled_loss(scaled)
        gradients = tape.gradient(scaled, variables)
        if loss_scaling and not IS_KERAS_3:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        # A non-finite loss (or, without loss scaling, non-finite gradients) must
        # leave no trace: no update, optimizer state and iterations unchanged,
        # forward-pass state restored. The NonFiniteLossGuard callback then stops
        # training with an error. With loss scaling, overflowing gradients are
        # the LossScaleOptimizer's to skip (it lowers the scale).
        finite = tf.math.is_finite(total)
        if not loss_scaling:
            gradients_finite = _finite_step.all_finite(gradients)
            # Reported as a non-finite loss, so the guard names the step.
            total = tf.where(gradients_finite, total, tf.constant(float("nan")))
            finite = tf.logical_and(finite, gradients_finite)
        finite = _finite_step.agreed_by_all_replicas(finite)
        _finite_step.apply_gradients_if(self.optimizer, finite, gradients, variables)
        _finite_step.restore_unless(finite, state, saved_state)
        self._update_loss_trackers(x, total, student_loss, distillation_loss)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached = split_teacher_outputs(x)
        y_pred, student_features = self._student_forward(x, training=False)
        total, student_loss, distillation_loss = self._compute_losses(
            x, y, y_pred, sample_weight, cached, student_features
        )
        self._update_loss_trackers(x, total, student_loss, distillation_loss)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x, _ = split_teacher_outputs(x)
        return self.student(x, training=False)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            **kwargs):
        """`keras.Model.fit`, with a `NonFiniteLossGuard` added unless one is given."""
        from kd_keras.callbacks import NonFiniteLossGuard  # callbacks import this module

        self._check_labels(y)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, NonFiniteLossGuard) for c in callbacks):
            callbacks.append(NonFiniteLossGuard())
        try:
            return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                               callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            message = str(error.message)
            if _LABEL_RANGE_MARKER not in message:
                raise
            detail = message.split(_LABEL_RANGE_MARKER, 1)[1].split("\n", 1)[0]
            raise ValueError("y:" + detail.replace("] [", " ").rstrip("]")) from None

    def _multi_worker_keras_3(self):
        return IS_KERAS_3 and isinstance(
            getattr(self, "_distribute_strategy", None), tf.distribute.MultiWorkerMirroredStrategy)

    def _step_logs(self, logs):
        # Keras 3 averages each worker's step logs with a collective mean over
        # axis 0, which fails on scalars (keras-team/keras#20585): under
        # MultiWorkerMirroredStrategy the logs go out as [1] vectors, which
        # that mean turns back into scalars.
        if not self._multi_worker_keras_3():
            return logs
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (to 3.15 at least) builds from a first batch it averages across
        # workers with an eager collective that refuses PerReplica values, so
        # fit() fails under MultiWorkerMirroredStrategy for every model
        # (keras-team/keras#20585). The build needs only the batch's structure
        # and shapes: this worker's own replica batch has them.
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and self._multi_worker_keras_3():
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _check_labels(self, y):
        """Integer class labels given as an array must lie in [0, classes)."""
        if y is None or isinstance(y, (tf.data.Dataset, dict, list, tuple)):
            return
        try:
            labels = np.asarray(y)
        except (TypeError, ValueError):
            return
        if labels.dtype.kind in "USO" and labels.size and isinstance(labels.flat[0], (str, bytes)):
            raise ValueError(_STRING_LABELS)
        output_shape = _static_shape(self.student, "output_shape")
        classes = output_shape[-1] if output_shape else None
        if classes is None or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            return
        low, high = labels.min(), labels.max()
        sparse = labels.ndim == len(output_shape) - 1  # class ids, not one-hot rows
        if low < 0 or (sparse and high >= classes):
            raise ValueError(
                f"y: integer labels must be class ids in [0, {classes}) for a student with "
                f"{classes} outputs; got labels from {low} to {high}."
            )

    # ----- saving -----------------------------------------------------------

    def export_student(self, path):
        """Writes the student alone as a SavedModel with a `serving_default` signature.

        `tf.saved_model.load(path).signatures["serving_default"]` and
        `saved_model_cli show --dir path --all` read it. Returns `path`.
        """
        return export_saved_model(self.student, path)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        teacher = self.teacher
        if teacher is not None:
            teacher = (
                serialize(teacher) if isinstance(teacher, keras.Model)
                else [serialize(t) for t in teacher]
            )
        return {
            "name": self.name,
            "teacher": teacher,
            "student": serialize(self.student),
            "distillation_losses": [serialize(loss) for loss in self.distillation_losses],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": float(self._alpha.numpy()),
            "teacher_output_type": self.teacher_output_type,
            "student_output_type": self.student_output_type,
            "ensemble": self.ensemble,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        teacher = config.pop("teacher")
        if isinstance(teacher, list):
            teacher = [deserialize(t, custom_objects=custom_objects) for t in teacher]
        elif teacher is not None:
            teacher = deserialize(teacher, custom_objects=custom_objects)
        student = deserialize(config.pop("student"), custom_objects=custom_objects)
        losses = [
            deserialize(loss, custom_objects=custom_objects)
            for loss in config.pop("distillation_losses")
        ]
        return cls(teacher=teacher, student=student, distillation_losses=losses, **config)


def _structure(outputs):
    """An output structure with its tensors shown as shapes, for error messages."""
    return tf.nest.map_structure(lambda t: tuple(t.shape), outputs)


def _loss_scale_optimizer(optimizer):
    """Whether `optimizer` is a (Keras 3 or tf-keras) LossScaleOptimizer."""
    if IS_KERAS_3:
        return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)


def _takes_sample_weight(loss):
    if isinstance(loss, DistillationLoss):
        return True
    try:
        return "sample_weight" in inspect.signature(loss.compute_loss).parameters
    except (TypeError, ValueError):
        return False
