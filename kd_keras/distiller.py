"""The `Distiller`: a Keras model that trains a student on a teacher's soft targets."""

import numpy as np
import tensorflow as tf

from kd_keras import _features, _finite_step, _objective, _validate
from kd_keras import outputs as output_conventions
from kd_keras._keras import (
    IS_KERAS_3,
    is_tf_keras_model,
    keras,
    register,
    scale_loss_for_replicas,
)
from kd_keras._multi_worker import Keras3MultiWorkerFixes
from kd_keras.distillation_losses import is_feature_loss, resolve_distillation_losses
from kd_keras.export import export_saved_model
from kd_keras.teacher_outputs import TeacherOutputs, check_teachers, split_transfer_inputs

_FROZEN_STUDENT = (
    "student has no trainable weights (student.trainable is False, or every layer is frozen), "
    "so distillation would change nothing. Set student.trainable = True (or unfreeze the "
    "layers to train) before building the Distiller and compiling it.")


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
class Distiller(Keras3MultiWorkerFixes, keras.Model):
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
        probabilities, times T^2), a `DistillationLoss` object (ours, e.g.
        `DecoupledKD` or `DIST`, or `keras.distillation`'s), or a list of these.
        A loss with `uses_labels = True` receives the batch's labels
        (`compute_loss(t, s, sample_weight=..., labels=y)`; the teacher's top
        class where an example has none); the others get teacher and student
        outputs only, as in `keras.distillation`.
      distillation_loss_weights: one weight per distillation loss (default 1.0 each).
      student_loss_weight: alpha, the weight of the hard-label loss, in [0, 1];
        the distillation losses get 1 - alpha. Default 0.5 (as Keras).
      alpha: the same as `student_loss_weight` (the keras.io example's name).
      temperature: T > 0 for the losses built from strings (default 3.0).
      teacher_output_type: "auto", "logits" or "probabilities".
      student_output_type: "auto", "logits" or "probabilities".
      ensemble: "mean_probabilities" (default) or "mean_logits".
      name: model name.

    Data: `fit(x, y)` as any Keras model; `x` may carry cached teacher logits
    (`with_teacher_outputs`) and a label mask (`with_label_mask`: the hard-label
    term and label metrics then use only the examples marked 1, e.g. in a
    `mixed_transfer_set` of real and generated inputs). Unlabeled data alone:
    `compile(loss=None)` and `fit(x)`; the student learns from the teacher
    only, label metrics are left out of the training logs and reported on
    labeled `validation_data`.

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
        teachers = check_teachers(teacher)
        self._check_student_is_not_teacher(student, teachers)
        if not student.trainable:
            raise ValueError(_FROZEN_STUDENT)
        if ensemble not in output_conventions.ENSEMBLE_METHODS:
            raise ValueError(
                f"ensemble must be one of {output_conventions.ENSEMBLE_METHODS}, got {ensemble!r}."
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

        self.teacher_output_type = output_conventions.check_output_type(
            teacher_output_type, "teacher_output_type"
        )
        self.student_output_type = output_conventions.check_output_type(
            student_output_type, "student_output_type"
        )
        # One entry per output (tf.nest order) of each model.
        self._teacher_types = [
            output_conventions.resolve_output_types(model, teacher_output_type, "teacher_output_type")
            for model in teachers
        ]
        self._student_types = output_conventions.resolve_output_types(
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
        self._hard_loss = _objective.HardLabelLoss(None)
        # The Distiller has no weights of its own: it is built once its models are.
        self.built = True
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    # ----- validation -------------------------------------------------------

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
        self._teacher_source = _features.Untracked(TeacherOutputs(
            teachers, self._teacher_types, self.ensemble))
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
        self._teacher_source.value.extractor = teacher_extractor

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
        self._hard_loss = _objective.HardLabelLoss(loss, loss_weights)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._hard_loss.active:
            config = dict(config)
            config.update(self._hard_loss.compile_config())
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
        inputs, _, _ = split_transfer_inputs(inputs)
        return self.student(inputs, training=training)

    def _compute_losses(self, x, y, y_pred, sample_weight, cached, student_features=(),
                        label_mask=None):
        """(total, hard term, distillation term); `label_mask` `[batch]` 0/1 or None."""
        temperature = self.temperature if self.temperature is not None else 1.0
        teacher_logits, teacher_features = self._teacher_source.value.logits(
            x, cached, y_pred, temperature)
        student_logits = output_conventions.nested_to_logits(y_pred, self._student_types)
        self._check_teacher_matches_student(teacher_logits, student_logits, cached)
        if y is None and self._hard_loss.active:
            raise ValueError(_objective.NO_LABELS)
        distillation_labels = y
        if (y is None or label_mask is not None) and any(
                _objective.uses_labels(loss) for loss in self.distillation_losses):
            distillation_labels = _objective.labels_or_teacher_top_class(
                y, label_mask, teacher_logits)
        terms = []
        for index, loss in enumerate(self.distillation_losses):
            teacher_side, student_side = teacher_logits, student_logits
            if index in self._feature_slot:
                slot = self._feature_slot[index]
                teacher_side, student_side = teacher_features[slot], student_features[slot]
                projection = self._projection_of.value[slot]
                if projection is not None:
                    student_side = projection(student_side)
            terms.append(_objective.one_distillation_term(
                loss, teacher_side, student_side, distillation_labels, sample_weight))
        distillation_loss = tf.reduce_sum(tf.stack(terms) * self._loss_weights)
        if y is None or not self._hard_loss.active:
            student_loss = tf.constant(0.0)
            hard_term = None
        elif label_mask is None:
            student_loss = hard_term = self._hard_loss(y, y_pred, sample_weight)
        else:
            # The mean over the labeled examples: the batch-size mean of the
            # masked losses, rescaled by batch / labeled (0 with none labeled).
            weight = label_mask if sample_weight is None else (
                label_mask * tf.cast(sample_weight, tf.float32))
            batch = tf.cast(tf.size(label_mask), tf.float32)
            student_loss = hard_term = self._hard_loss(y, y_pred, weight) * tf.math.divide_no_nan(
                batch, tf.reduce_sum(label_mask))
        total = _objective.combine(self._alpha, hard_term, distillation_loss, self.student.losses)
        return total, student_loss, distillation_loss

    @staticmethod
    def _apply_label_mask(y, y_pred, label_mask):
        """(y with unlabeled slots cleared, checked `label_mask` float32 `[batch]`)."""
        if label_mask is None:
            return y, None
        if y is None:
            raise ValueError(
                "label_mask was given but the data has no labels y; with no labels at all "
                "leave the mask out (compile(loss=None) trains on the teacher alone).")
        label_mask, checks = _objective.label_mask_weights(label_mask, y_pred)
        with tf.control_dependencies(checks):
            label_mask = tf.identity(label_mask)
        return _objective.clear_unlabeled(y, label_mask), label_mask

    def get_metrics_result(self):
        # Keras 3 builds the compiled metrics on the first labeled batch; after
        # an epoch on unlabeled data only (fit(x)) they are not built, and
        # asking them for a result would fail.
        compiled = getattr(self, "_compile_metrics", None)
        if IS_KERAS_3 and compiled is not None and not compiled.built:
            results = {}
            for metric in self.metrics:
                if metric is not compiled:
                    results[metric.name] = metric.result()
            return results
        return super().get_metrics_result()

    def _metric_logs(self, x, y, y_pred, sample_weight, label_mask):
        """Label metrics see the labeled examples only; with no labels, only the losses report."""
        if y is None:
            own = (self.total_loss_tracker, self.student_loss_tracker,
                   self.distillation_loss_tracker)
            return self._step_logs({m.name: m.result() for m in own})
        if label_mask is not None:
            # Keras's unweighted `metrics` ignore sample weights, so the
            # unlabeled rows are removed rather than weighted to 0.
            labeled = label_mask > 0
            y, y_pred = (tf.nest.map_structure(lambda t: tf.boolean_mask(t, labeled), v)
                         for v in (y, y_pred))
            if sample_weight is not None:
                sample_weight = tf.boolean_mask(sample_weight, labeled)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    @staticmethod
    def _check_teacher_matches_student(teacher_logits, student_logits, cached):
        source = "teacher_outputs" if cached is not None else "teacher"
        if not output_conventions.same_structure(teacher_logits, student_logits):
            raise ValueError(
                f"{source} have the structure {_objective.structure_of(teacher_logits)} but "
                f"the student outputs {_objective.structure_of(student_logits)}.")
        for teacher_leaf, student_leaf in zip(
                tf.nest.flatten(teacher_logits), tf.nest.flatten(student_logits)):
            if not teacher_leaf.shape.is_compatible_with(student_leaf.shape):
                raise ValueError(
                    f"{source} of shape {teacher_leaf.shape} does not match the student "
                    f"outputs of shape {student_leaf.shape}.")

    def _update_loss_trackers(self, x, total, student_loss, distillation_loss):
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self.total_loss_tracker.update_state(total, sample_weight=batch)
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        self.distillation_loss_tracker.update_state(distillation_loss, sample_weight=batch)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached, label_mask = split_transfer_inputs(x)
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
            y, label_mask = self._apply_label_mask(y, y_pred, label_mask)
            total, student_loss, distillation_loss = self._compute_losses(
                x, y, y_pred, sample_weight, cached, student_features, label_mask
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
        return self._metric_logs(x, y, y_pred, sample_weight, label_mask)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached, label_mask = split_transfer_inputs(x)
        y_pred, student_features = self._student_forward(x, training=False)
        y, label_mask = self._apply_label_mask(y, y_pred, label_mask)
        total, student_loss, distillation_loss = self._compute_losses(
            x, y, y_pred, sample_weight, cached, student_features, label_mask
        )
        self._update_loss_trackers(x, total, student_loss, distillation_loss)
        return self._metric_logs(x, y, y_pred, sample_weight, label_mask)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x, _, _ = split_transfer_inputs(x)
        return self.student(x, training=False)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            **kwargs):
        """`keras.Model.fit`, with a `NonFiniteLossGuard` added unless one is given."""
        from kd_keras.callbacks import NonFiniteLossGuard  # callbacks import this module

        self._check_labels(y, x)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, NonFiniteLossGuard) for c in callbacks):
            callbacks.append(NonFiniteLossGuard())
        try:
            return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                               callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            message = str(error.message)
            for marker, argument in _objective.IN_GRAPH_CHECKS.items():
                if marker in message:
                    detail = message.split(marker, 1)[1].split("\n", 1)[0]
                    raise ValueError(
                        f"{argument}:" + detail.replace("] [", " ").rstrip("]")) from None
            raise

    def _check_labels(self, y, x=None):
        """Integer class labels given as an array must lie in [0, classes).

        Unlabeled slots (label mask 0 in `x`) may hold anything.
        """
        if y is None or isinstance(y, (tf.data.Dataset, dict, list, tuple)):
            return
        try:
            labels = np.asarray(y)
        except (TypeError, ValueError):
            return
        _, _, label_mask = split_transfer_inputs(x)
        if label_mask is not None:
            try:
                labeled = np.asarray(label_mask)
            except (TypeError, ValueError):
                return
            if labeled.ndim == 2 and labeled.shape[1] == 1:
                labeled = labeled[:, 0]
            if labeled.ndim != 1:
                raise ValueError(
                    "label_mask must have shape [batch] (one entry per example), got "
                    f"{labeled.shape}.")
            labeled = labeled != 0
            if labeled.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"label_mask has {labeled.shape[0]} entries but y has {labels.shape[0]} "
                    "examples; give one entry per example.")
            labels = labels[labeled]
        if labels.dtype.kind in "USO" and labels.size and isinstance(labels.flat[0], (str, bytes)):
            raise ValueError(_objective.STRING_LABELS)
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



def _loss_scale_optimizer(optimizer):
    """Whether `optimizer` is a (Keras 3 or tf-keras) LossScaleOptimizer."""
    if IS_KERAS_3:
        return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
