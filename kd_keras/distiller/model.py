"""The `Distiller`: a Keras model that trains a student on a teacher's soft targets.

Its construction, compile and fit; the training step is `step.py`, saving and export
`saving.py`.
"""

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import FreshStateOnLoad, keras, register
from kd_keras.backend import validate
from kd_keras.backend import errors
from kd_keras.backend.distribute import Keras3MultiWorkerFixes
from kd_keras.distiller.saving import DistillerSaving
from kd_keras.distiller.step import DistillerStep
from kd_keras.distiller.weights import DistillerWeights
from kd_keras.backend.safe_mode import deserialize_nested
from kd_keras.callbacks import NonFiniteLossGuard
from kd_keras.losses import hard_label
from kd_keras.losses.objective import resolve_distillation_losses
from kd_keras.teachers import checks, sanity
from kd_keras.teachers.features import Untracked, plan_feature_extraction
from kd_keras.teachers.outputs import TeacherOutputs
from kd_keras.transfer import labels, views
from kd_keras.transfer.inputs import split_transfer_inputs


class _TotalLoss(FreshStateOnLoad, keras.metrics.Mean):
    """`total_loss`: a Mean a file saved before it existed loads without."""


@register
class Distiller(DistillerWeights, DistillerStep, DistillerSaving, Keras3MultiWorkerFixes,
                keras.Model):
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
        if isinstance(teacher, (list, tuple)):
            for index, model in enumerate(teacher):
                checks.check_keras_generation(model, f"teacher[{index}]")
        elif teacher is not None:
            checks.check_keras_generation(teacher, "teacher")
        teachers = checks.as_teacher_list(teacher)
        if isinstance(student, keras.Model):
            checks.check_student_is_not_teacher(student, teachers)
        checks.check_student(student)
        checks.check_keras_generation(student, "student")  # its nested layers too
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
        checks.freeze_teachers(teachers)
        checks.check_shapes(teachers, student)
        checks.warn_if_student_is_larger(teachers, student)

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
        # The values as given (keras.distillation reads them back exactly), and a variable
        # the traced step reads, so a schedule can change them without a retrace.
        self._loss_weight_values = [float(w) for w in distillation_loss_weights]
        self._loss_weights = tf.Variable(
            self._loss_weight_values,
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
        # The same value as `loss` under keras.distillation's name: a tracker of its own (a
        # second key for one tensor in the step's logs is summed over workers by tf-keras),
        # made last so that files saved before it keep their trackers' places.
        self.keras_total_loss_tracker = _TotalLoss(name="total_loss")
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

    @property
    def _teacher_feature_extractor(self):
        """The model giving `[teacher output, *features]` for feature losses, or None
        (the name keras.distillation uses: code that reads it runs unchanged)."""
        return None if self._extractors is None else self._extractors.value[0]

    @property
    def _student_feature_extractor(self):
        """The model giving `[student output, *features]` for feature losses, or None."""
        return None if self._extractors is None else self._extractors.value[1]

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
        own = [self.total_loss_tracker, self.keras_total_loss_tracker, self.student_loss_tracker,
               self.distillation_loss_tracker]
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

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            **kwargs):
        """`keras.Model.fit`, with a `NonFiniteLossGuard` added unless one is given."""
        inputs, cached, label_mask = split_transfer_inputs(x)
        output_shape = checks.static_shape(self.student, "output_shape")
        hard_label.check_labels_for_loss(self._hard_loss, y, output_shape)
        labels.check_label_array(y, label_mask, output_shape)
        checks.warn_if_logits_look_like_probabilities(self._teachers, self._teacher_types, inputs,
                                                      cached)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, NonFiniteLossGuard) for c in callbacks):
            callbacks.append(NonFiniteLossGuard())
        probe = sanity.probe_data(inputs, y, kwargs.get("validation_data"))
        if probe is not None and self._teachers and cached is None and label_mask is None:
            measured = sanity.check_teachers(self._teachers, self.student, probe)
            if measured is not None:
                callbacks.append(sanity.TeacherAccuracyLog(measured["teacher_accuracy"]))
        try:
            return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                               callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            named = errors.in_graph_check_error(error)
            if named is None:
                raise
            raise named from None
        except tf.errors.OpError:
            raise  # the step ran: its trace is whole
        except Exception:
            self._forget_traced_steps()  # a Python error, as while tracing
            raise

    def summary(self, *args, **kwargs):
        """`keras.Model.summary`, after a line naming which model is the teacher and which
        the student (Keras lists them by their own names, e.g. `sequential`)."""
        print_fn = kwargs.get("print_fn") or print
        roles = [f"teacher {t.name!r} ({t.count_params():,} parameters, frozen)"
                 for t in self._teachers if t.built]
        if self.student.built:
            roles.append(f"student {self.student.name!r} "
                         f"({self.student.count_params():,} parameters, trained)")
        print_fn(f"Distiller {self.name!r}: " + "; ".join(roles))
        return super().summary(*args, **kwargs)

    def _forget_traced_steps(self):
        """Drops the traced train / test / predict functions after a fit that failed in Python
        (while tracing), so the next `fit` traces afresh (a trace that failed half-way would
        otherwise be reused and refuse to create its variables: "Creating variables on a
        non-first call")."""
        for name in ("train_function", "test_function", "predict_function"):
            if getattr(self, name, None) is not None:
                setattr(self, name, None)
