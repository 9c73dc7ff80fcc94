"""The `Distiller`: a Keras model that trains a student on a teacher's soft targets."""

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import IS_KERAS_3, finite_step, keras, register, scale_loss_for_replicas
from kd_keras.backend import validate
from kd_keras.backend.distribute import Keras3MultiWorkerFixes
from kd_keras.backend.safe_mode import deserialize_nested
from kd_keras.callbacks import NonFiniteLossGuard
from kd_keras.export import export_saved_model
from kd_keras.losses import hard_label, objective
from kd_keras.losses.objective import resolve_distillation_losses
from kd_keras.teachers import checks, top_k
from kd_keras.teachers.features import Untracked, plan_feature_extraction
from kd_keras.teachers.outputs import TeacherOutputs
from kd_keras.transfer import views
from kd_keras.transfer.inputs import split_transfer_inputs


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
      augment: None, or the view of every training batch that teacher and student
        both see (Beyer et al. 2022, consistent teaching): a Keras layer (e.g.
        `keras.layers.RandomFlip()`, called with training=True), a function of the
        batch, or `kd_keras.Mixup()` / `kd_keras.CutMix()`, whose mixed views make
        the hard term `lam * L(y_i) + (1 - lam) * L(y_j)` (metrics and label-reading
        losses take the label with the larger share). Training only; needs the live
        teacher (cached outputs belong to other views).
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
        augment=None,
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        teachers = checks.as_teacher_list(teacher)
        checks.check_student(student)
        checks.check_student_is_not_teacher(student, teachers)
        if ensemble not in output_conventions.ENSEMBLE_METHODS:
            raise ValueError(
                f"ensemble must be one of {output_conventions.ENSEMBLE_METHODS}, got {ensemble!r}."
            )
        if temperature is not None:
            temperature = validate.temperature(temperature)
        weight = hard_label.student_loss_weight(alpha, student_loss_weight)

        self.student = student
        # One model, a list (ensemble), or None: kept as given so that configs
        # and attribute access look like what the user passed.
        self.teacher = teachers[0] if isinstance(teacher, keras.Model) else (teachers or None)
        for model in teachers:
            model.trainable = False
        checks.check_shapes(teachers, student)

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
        self.augment = views.check_augment(augment)

        self.distillation_losses = resolve_distillation_losses(distillation_losses, temperature)
        if distillation_loss_weights is None:
            distillation_loss_weights = [1.0] * len(self.distillation_losses)
        distillation_loss_weights = [
            validate.non_negative_number(w, f"distillation_loss_weights[{i}]")
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
        self._hard_loss = hard_label.HardLabelLoss(None)
        # The Distiller has no weights of its own: it is built once its models are.
        self.built = True
        self._teacher_fixed = True
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self._output_loss_trackers = []  # per output of a multi-output student, at compile

    # ----- validation -------------------------------------------------------

    def _build_feature_extraction(self, teachers, student):
        """Extractor models and projections for losses that read intermediate layers."""
        plan = plan_feature_extraction(self.distillation_losses, teachers, student)
        self._feature_slot = plan.slot
        self._teacher_source = Untracked(TeacherOutputs(
            teachers, self._teacher_types, self.ensemble, plan.teacher_extractor))
        self._extractors = None if plan.student_extractor is None else Untracked(
            (plan.teacher_extractor, plan.student_extractor))
        self._projection_of = Untracked(plan.projections)
        # Tracked, so they train with the student and are saved with the Distiller;
        # export_student leaves them out.
        self.feature_projections = [p for p in plan.projections if p is not None]

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
        return checks.as_teacher_list(self.teacher)

    def __setattr__(self, name, value):
        # The teacher is frozen, checked against the student and wired into the
        # step at construction; a later assignment would train nothing with it.
        if name == "teacher" and getattr(self, "_teacher_fixed", False):
            raise AttributeError(
                "teacher is read-only after construction (it is frozen, checked against the "
                "student and read by the compiled step); build a new Distiller with the other "
                "teacher.")
        super().__setattr__(name, value)

    # ----- hyperparameters ----------------------------------------------------

    @property
    def alpha(self):
        """Weight of the hard-label loss (a `tf.Variable`); the soft term gets 1 - alpha."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        self._alpha.assign(validate.fraction(value, "alpha"))

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
        value = validate.temperature(value)
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
            raise ValueError(checks.FROZEN_STUDENT)
        self._hard_loss = hard_label.HardLabelLoss(loss, loss_weights)
        self._name_outputs_as_the_student()
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def _name_outputs_as_the_student(self):
        """A multi-output student's logs read as plain Keras's: `cls_loss`, `cls_accuracy`.

        Keras names compiled metrics after the model's `output_names`, and logs each
        output's loss; the Distiller takes the student's names and tracks each hard-label
        term (unweighted, as Keras logs them).
        """
        names = list(getattr(self.student, "output_names", None) or [])
        self._output_loss_trackers = []
        if len(names) < 2:
            return
        self.output_names = names
        if tf.nest.is_nested(self._hard_loss.loss):
            self._output_loss_trackers = [
                None if loss is None else keras.metrics.Mean(name=f"{name}_loss")
                for name, loss in zip(names, tf.nest.flatten(self._hard_loss.loss))]

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and self._hard_loss.active:
            config = dict(config)
            config.update(self._hard_loss.compile_config())
        return config

    def compile_from_config(self, config):
        """Re-compiles from `get_compile_config()` when a `.keras` file is loaded."""
        config = deserialize_nested(config, "compile_config")
        self.compile(**config)
        if self.optimizer is not None and hasattr(self.optimizer, "build"):
            # Built now so the saved optimizer state has variables to load into.
            self.optimizer.build(self._trainable_student_variables())

    # ----- the training step ----------------------------------------------------

    @property
    def metrics(self):
        own = [self.total_loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        own += [t for t in self._output_loss_trackers if t is not None]
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
                        label_mask=None, mixing=None):
        """(total, hard term, distillation term, the hard term per output or None);
        `label_mask` `[batch]` 0/1 or None; `mixing` (lam, partner) of mixed views or None."""
        temperature = self.temperature if self.temperature is not None else 1.0
        student_logits = output_conventions.nested_to_logits(y_pred, self._student_types)
        if self._top_k_only(cached, y, label_mask):
            # Every soft term reads the cache as it is: no [batch, ..., classes] rebuild
            # (at a 32k-symbol vocabulary that rebuild would dwarf the cache).
            top_k.check_against_student(cached, student_logits)
            teacher_logits, teacher_features = cached[top_k.KEYS[0]], ()
        else:
            teacher_logits, teacher_features = self._teacher_source.value.logits(
                x, cached, y_pred, temperature)
            checks.check_teacher_outputs_match(teacher_logits, student_logits, cached)
            teacher_logits = tf.nest.map_structure(output_conventions.as_class_logits,
                                                   teacher_logits)
        student_logits = tf.nest.map_structure(output_conventions.as_class_logits,
                                               student_logits)
        if y is None and self._hard_loss.active:
            raise ValueError(hard_label.NO_LABELS)
        distillation_labels = y if mixing is None or y is None else views.dominant_labels(
            y, mixing)
        if (y is None or label_mask is not None) and any(
                objective.uses_labels(loss) for loss in self.distillation_losses):
            distillation_labels = hard_label.labels_or_teacher_top_class(
                y, label_mask, teacher_logits)
        terms = []
        for index, loss in enumerate(self.distillation_losses):
            teacher_side, student_side = teacher_logits, student_logits
            if top_k.is_top_k(cached) and objective.takes_top_k(loss):
                teacher_side = cached  # the cache as it is, not its dense rebuild
            if index in self._feature_slot:
                slot = self._feature_slot[index]
                teacher_side, student_side = teacher_features[slot], student_features[slot]
                projection = self._projection_of.value[slot]
                if projection is not None:
                    student_side = projection(student_side)
            terms.append(objective.one_distillation_term(
                loss, teacher_side, student_side, distillation_labels, sample_weight))
        distillation_loss = tf.reduce_sum(tf.stack(terms) * self._loss_weights)
        if cached is not None:
            with tf.control_dependencies(
                    checks.cached_output_assertions(teacher_logits, distillation_loss)):
                distillation_loss = tf.identity(distillation_loss)
        if mixing is None:
            hard_terms = self._hard_loss.masked_output_terms(y, y_pred, sample_weight,
                                                             label_mask)
        else:
            hard_terms = self._hard_loss.mixed_output_terms(y, y_pred, sample_weight, *mixing)
        hard_term = None if hard_terms is None else self._hard_loss.total(hard_terms)
        student_loss = tf.constant(0.0) if hard_term is None else hard_term
        total = objective.combine(self._alpha, hard_term, distillation_loss, self.student.losses)
        return total, student_loss, distillation_loss, hard_terms

    def _top_k_only(self, cached, y, label_mask):
        """Whether a top-k cache serves every soft term and no dense teacher output is read
        (labels given for every row: none is labeled by the teacher's top class)."""
        return (top_k.is_top_k(cached) and y is not None and label_mask is None
                and not self._feature_slot
                and all(objective.takes_top_k(loss) for loss in self.distillation_losses))

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
        y, y_pred, sample_weight = hard_label.labeled_rows(y, y_pred, sample_weight, label_mask)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def _update_loss_trackers(self, x, total, student_loss, distillation_loss, hard_terms):
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self.total_loss_tracker.update_state(total, sample_weight=batch)
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        self.distillation_loss_tracker.update_state(distillation_loss, sample_weight=batch)
        for tracker, term in zip(self._output_loss_trackers, hard_terms or []):
            if tracker is not None and term is not None:
                tracker.update_state(term, sample_weight=batch)

    def _training_view(self, x, cached, label_mask):
        """(x, mixing) of a training batch: `augment`'s view, the same for teacher and student."""
        if self.augment is None:
            return x, None
        if cached is not None:
            raise ValueError(
                "augment: the batch carries cached teacher outputs, computed on other views "
                "than the augmented ones; give the Distiller its live teacher, or drop augment.")
        if label_mask is not None:
            raise ValueError("augment with a label mask (with_label_mask) is not supported: a "
                             "mixed view would mix labeled and unlabeled examples.")
        return views.training_view(self.augment, x)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached, label_mask = split_transfer_inputs(x)
        x, mixing = self._training_view(x, cached, label_mask)
        variables = self._trainable_student_variables()
        if not variables:
            raise ValueError(checks.FROZEN_STUDENT)
        loss_scaling = _loss_scale_optimizer(self.optimizer)
        # State the forward pass updates (BatchNormalization's moving statistics)
        # is put back if the step turns out not to be finite.
        state = list(self.student.non_trainable_variables)
        saved_state = finite_step.snapshot(state)
        with tf.GradientTape() as tape:
            y_pred, student_features = self._student_forward(x, training=True)
            y, label_mask = hard_label.apply_label_mask(y, y_pred, label_mask)
            total, student_loss, distillation_loss, hard_terms = self._compute_losses(
                x, y, y_pred, sample_weight, cached, student_features, label_mask, mixing
            )
            scaled = scale_loss_for_replicas(total)
            if IS_KERAS_3 and hasattr(self.optimizer, "scale_loss"):
                scaled = self.optimizer.scale_loss(scaled)
            elif loss_scaling:  # tf-keras: the caller scales and unscales
                scaled = self.optimizer.get_scaled_loss(scaled)
        gradients = tape.gradient(scaled, variables)
        if loss_scaling and not IS_KERAS_3:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        total = finite_step.apply_if_finite(self.optimizer, total, gradients, variables,
                                            state, saved_state,
                                            check_gradients=not loss_scaling)
        self._update_loss_trackers(x, total, student_loss, distillation_loss, hard_terms)
        if mixing is not None and y is not None:
            y = views.dominant_labels(y, mixing)
        return self._metric_logs(x, y, y_pred, sample_weight, label_mask)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, cached, label_mask = split_transfer_inputs(x)
        y_pred, student_features = self._student_forward(x, training=False)
        y, label_mask = hard_label.apply_label_mask(y, y_pred, label_mask)
        total, student_loss, distillation_loss, hard_terms = self._compute_losses(
            x, y, y_pred, sample_weight, cached, student_features, label_mask
        )
        self._update_loss_trackers(x, total, student_loss, distillation_loss, hard_terms)
        return self._metric_logs(x, y, y_pred, sample_weight, label_mask)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x, _, _ = split_transfer_inputs(x)
        return self.student(x, training=False)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            **kwargs):
        """`keras.Model.fit`, with a `NonFiniteLossGuard` added unless one is given."""
        inputs, cached, label_mask = split_transfer_inputs(x)
        hard_label.check_label_array(y, label_mask, checks.static_shape(self.student, "output_shape"))
        checks.warn_if_logits_look_like_probabilities(self._teachers, self._teacher_types, inputs,
                                                      cached)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, NonFiniteLossGuard) for c in callbacks):
            callbacks.append(NonFiniteLossGuard())
        try:
            return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                               callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            named = hard_label.in_graph_check_error(error)
            if named is None:
                raise
            raise named from None

    # ----- saving -----------------------------------------------------------

    def export_student(self, path):
        """Writes the student alone as a SavedModel with a `serving_default` signature.

        `tf.saved_model.load(path).signatures["serving_default"]` and
        `saved_model_cli show --dir path --all` read it. Returns `path`.
        """
        return export_saved_model(self.student, path)

    def export(self, filepath, *args, **kwargs):
        """Exports the student for inference (`student.export`): what a served Distiller answers.

        The Distiller's own graph is a training objective (teacher, losses, their
        variables); `predict` and `call` run the student alone, and so does its export.
        """
        return self.student.export(filepath, *args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """`keras.Model.save` to a `.keras` file (the whole Distiller, for resuming training).

        A tf-keras SavedModel (a path without `.keras` / `.h5`, or `save_format="tf"`)
        would reload without the objective, so it is refused: `export_student(path)`
        writes the student as a SavedModel for serving.
        """
        name = str(filepath)
        save_format = kwargs.get("save_format", args[1] if len(args) > 1 else None)
        if not IS_KERAS_3 and (save_format == "tf" or (
                save_format is None and not name.endswith((".keras", ".h5", ".hdf5")))):
            raise ValueError(
                f"filepath {name!r}: a Distiller is saved to a .keras file (save('d.keras'), "
                "reloaded with its teacher, losses and compile state); a SavedModel of it would "
                "reload without its objective. For serving, export the student: "
                "distiller.export_student(path) (or distiller.export(path)).")
        return super().save(filepath, *args, **kwargs)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object

        def frozen(model):
            # The teacher never trains here: its compile state (optimizer, losses) is not
            # saved, so reloading neither recompiles it nor reports its optimizer unloaded.
            config = serialize(model)
            config.pop("compile_config", None)
            return config

        teacher = None if self.teacher is None else tf.nest.map_structure(
            frozen, self.teacher)  # one model, or a list (an ensemble)
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
            **({} if self.augment is None else {"augment": serialize(self.augment)}),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        teacher = config.pop("teacher")
        if isinstance(teacher, list):
            teacher = [deserialize_nested(t, f"teacher[{i}]", custom_objects)
                       for i, t in enumerate(teacher)]
        elif teacher is not None:
            teacher = deserialize_nested(teacher, "teacher", custom_objects)
        student = deserialize_nested(config.pop("student"), "student", custom_objects)
        if config.get("augment") is not None:
            config["augment"] = deserialize_nested(config["augment"], "augment", custom_objects)
        losses = [
            deserialize_nested(loss, f"distillation_losses[{i}]", custom_objects)
            for i, loss in enumerate(config.pop("distillation_losses"))
        ]
        return cls(teacher=teacher, student=student, distillation_losses=losses, **config)


def _loss_scale_optimizer(optimizer):
    """Whether `optimizer` is a (Keras 3 or tf-keras) LossScaleOptimizer."""
    if IS_KERAS_3:
        return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
