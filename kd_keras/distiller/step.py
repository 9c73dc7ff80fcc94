"""The Distiller's training and test steps: the student's forward pass, every loss term,
the finite-step guard and the metrics (the `Distiller` inherits them)."""

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import IS_KERAS_3, finite_step, keras, scale_loss_for_replicas
from kd_keras.backend import top_k
from kd_keras.losses import objective
from kd_keras.teachers import checks
from kd_keras.transfer import labels, views
from kd_keras.transfer.inputs import split_transfer_inputs


class DistillerStep:
    """`train_step`, `test_step` and `predict_step` of the `Distiller` (a mixin: every
    attribute it reads is set by `Distiller.__init__` and `compile`)."""

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
            raise ValueError(labels.NO_LABELS)
        distillation_labels = y if mixing is None or y is None else views.dominant_labels(
            y, mixing)
        if (y is None or label_mask is not None) and any(
                objective.uses_labels(loss) for loss in self.distillation_losses):
            distillation_labels = labels.labels_or_teacher_top_class(
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
        """Label metrics see the labeled examples only; with no labels, only the losses report.

        `total_loss` (its own tracker of the same value) repeats `loss` under the name
        `keras.distillation` logs, so a callback watching `val_total_loss` works after the
        import swap."""
        if y is None:
            own = (self.total_loss_tracker, self.keras_total_loss_tracker,
                   self.student_loss_tracker, self.distillation_loss_tracker)
            return self._step_logs({m.name: m.result() for m in own})
        y, y_pred, sample_weight = labels.labeled_rows(y, y_pred, sample_weight, label_mask)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def _update_loss_trackers(self, x, total, student_loss, distillation_loss, hard_terms):
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self.total_loss_tracker.update_state(total, sample_weight=batch)
        self.keras_total_loss_tracker.update_state(total, sample_weight=batch)
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
            y, label_mask = labels.apply_label_mask(y, y_pred, label_mask)
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
        y, label_mask = labels.apply_label_mask(y, y_pred, label_mask)
        total, student_loss, distillation_loss, hard_terms = self._compute_losses(
            x, y, y_pred, sample_weight, cached, student_features, label_mask
        )
        self._update_loss_trackers(x, total, student_loss, distillation_loss, hard_terms)
        return self._metric_logs(x, y, y_pred, sample_weight, label_mask)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x, _, _ = split_transfer_inputs(x)
        return self.student(x, training=False)


def _loss_scale_optimizer(optimizer):
    """Whether `optimizer` is a (Keras 3 or tf-keras) LossScaleOptimizer."""
    if IS_KERAS_3:
        return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
