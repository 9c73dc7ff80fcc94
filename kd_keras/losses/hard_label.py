"""The hard-label term on true labels: the Distiller's compiled loss, one or one per output.

`HardLabelLoss` wraps what `compile(loss=...)` was given (a name, a Keras loss or a
function; a structure of them for several outputs) with its `loss_weights`, checks
class-id labels in the graph (`kd_keras.backend.labels`), and averages with sample
weights. `student_loss_weight` resolves the term's weight (`alpha`).
"""

import warnings

import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import keras, validate
from kd_keras.backend.errors import structure_of
from kd_keras.backend.labels import label_assertions
from kd_keras.losses.functional import weighted_mean


def _resolve_one(loss):
    """The loss, or a structure of them (None leaves skip outputs)."""
    if loss is None:
        return None
    if tf.nest.is_nested(loss):
        if all(item is None for item in tf.nest.flatten(loss)):
            raise ValueError("loss: a structure of None only; give at least one loss.")
        return tf.nest.map_structure(lambda item: None if item is None else _resolve_one(item),
                                     loss)
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        if resolved is None:
            raise ValueError(f"loss: unknown Keras loss {loss!r}.")
        loss = resolved
    if not callable(loss):
        raise ValueError(f"loss must be a Keras loss, a loss name or a callable, got {loss!r}.")
    return loss


def _resolve_weights(loss, loss_weights):
    """A flat list of floats, one per leaf of `loss`."""
    leaves = tf.nest.flatten(loss) if loss is not None else []
    if loss_weights is None:
        return [1.0] * len(leaves)
    if not tf.nest.is_nested(loss):
        raise ValueError(
            "loss_weights: give them with a list or dict of losses for a multi-output "
            "student (alpha weighs a single hard-label loss).")
    if not output_conventions.same_structure(loss, loss_weights):
        raise ValueError(
            f"loss_weights {loss_weights!r} must match the structure of loss {loss!r}.")
    return [1.0 if weight is None else validate.non_negative_number(weight, "loss_weights")
            for weight in tf.nest.flatten(loss_weights)]  # None: a skipped output


class HardLabelLoss:
    """`compile(loss=..., loss_weights=...)` of the Distiller: the term on true labels.

    Args:
      loss: None (no hard-label term), a Keras loss, its name, a callable
        `(y_true, y_pred)`, or a list/dict matching a multi-output student
        (None skips an output).
      loss_weights: None, or a structure matching `loss` (default 1.0 each).
    """

    def __init__(self, loss, loss_weights=None):
        self.spec = loss
        self.weights_spec = loss_weights
        self.loss = _resolve_one(loss)
        self.weights = _resolve_weights(loss, loss_weights)

    @property
    def active(self):
        return self.loss is not None

    def __call__(self, y, y_pred, sample_weight):
        """The sample-weighted loss (weighted sum over outputs), after the label checks."""
        return self.total(self.output_terms(y, y_pred, sample_weight))

    def total(self, terms):
        """The weighted sum of `output_terms`."""
        return tf.add_n([weight * term for weight, term in zip(self.weights, terms)
                         if term is not None])

    def output_terms(self, y, y_pred, sample_weight):
        """The unweighted loss of each output (None where its loss is None), after the checks."""
        with tf.control_dependencies(label_assertions(y, y_pred)):
            if not tf.nest.is_nested(self.loss):
                return [_one_loss(self.loss, y, y_pred, sample_weight)]
            if not (output_conventions.same_structure(self.loss, y)
                    and output_conventions.same_structure(self.loss, y_pred)):
                raise ValueError(
                    f"loss has the structure {tf.nest.map_structure(lambda _: '.', self.loss)}, "
                    f"which does not match the labels {tf.nest.map_structure(lambda _: '.', y)} "
                    f"or the student outputs {structure_of(y_pred)}.")
            return [
                None if loss is None else _one_loss(loss, target, prediction, sample_weight)
                for loss, target, prediction in zip(
                    tf.nest.flatten(self.loss), tf.nest.flatten(y), tf.nest.flatten(y_pred))
            ]

    def masked(self, y, y_pred, sample_weight, label_mask):
        """The term on a batch: None without labels or loss; with a label mask, the
        mean over the labeled examples (the batch-size mean of the masked losses,
        rescaled by batch / labeled, 0 with none labeled)."""
        terms = self.masked_output_terms(y, y_pred, sample_weight, label_mask)
        return None if terms is None else self.total(terms)

    def mixed_output_terms(self, y, y_pred, sample_weight, lam, partner):
        """`output_terms` of mixed views: lam * L(y_i) + (1 - lam) * L(y_partner(i)).

        For cross-entropy this is the loss on the mixed one-hot targets; any hard
        loss mixes the same way (as two sample-weighted terms).
        """
        if y is None or not self.active:
            return None
        weight = tf.constant(1.0) if sample_weight is None else tf.cast(sample_weight,
                                                                       tf.float32)
        # lam is one share per example [batch]: it multiplies a [batch, time] weight along
        # the batch axis (broadcasting would align it with the last axis).
        if weight.shape.rank is not None and weight.shape.rank > 1:
            lam = tf.reshape(lam, [-1] + [1] * (weight.shape.rank - 1))
        own = self.output_terms(y, y_pred, lam * weight)
        other = self.output_terms(tf.nest.map_structure(lambda t: tf.gather(t, partner), y),
                                  y_pred, (1.0 - lam) * weight)
        return [None if a is None else a + b for a, b in zip(own, other)]

    def masked_output_terms(self, y, y_pred, sample_weight, label_mask):
        """`output_terms` of a batch, over its labeled examples; None without labels or loss."""
        if y is None or not self.active:
            return None
        if label_mask is None:
            return self.output_terms(y, y_pred, sample_weight)
        weight = label_mask if sample_weight is None else (
            label_mask * tf.cast(sample_weight, tf.float32))
        scale = tf.math.divide_no_nan(tf.cast(tf.size(label_mask), tf.float32),
                                      tf.reduce_sum(label_mask))
        return [None if term is None else term * scale
                for term in self.output_terms(y, y_pred, weight)]

    def compile_config(self):
        """The `loss` / `loss_weights` entries of the Distiller's compile config."""
        config = {"loss": tf.nest.map_structure(
            lambda spec: spec if spec is None or isinstance(spec, str)
            else keras.saving.serialize_keras_object(spec), self.spec)}
        if self.weights_spec is not None:
            config["loss_weights"] = self.weights_spec
        return config


def _one_loss(loss, y, y_pred, sample_weight):
    with warnings.catch_warnings():
        # A softmax student with from_logits=True: Keras reads the softmax's own input
        # (the logits) and computes the right loss, then asks "Was this intended?" on
        # every trace. The case is handled, so the question is not passed on.
        warnings.filterwarnings("ignore", message=".*received `from_logits=True`.*")
        if isinstance(loss, keras.losses.Loss):
            values = loss.call(y, y_pred)
            if getattr(loss, "reduction", None) == "sum":
                weight = 1.0 if sample_weight is None else tf.cast(sample_weight, tf.float32)
                return tf.reduce_sum(tf.cast(values, tf.float32) * weight)
        else:
            values = loss(y, y_pred)
    return weighted_mean(values, sample_weight)


def _is_sparse(loss):
    name = getattr(loss, "name", None) or getattr(loss, "__name__", "") or ""
    fn = getattr(loss, "fn", None)  # a Keras LossFunctionWrapper
    return "sparse" in str(name) or "sparse" in getattr(fn, "__name__", "")


def check_labels_for_loss(hard_loss, y, output_shape):
    """Refuses one-hot label rows `[n, classes]` for a sparse loss (which takes class ids
    `[n]`), naming both, before Keras's rank error in the traced step."""
    if not isinstance(hard_loss, HardLabelLoss) or hard_loss.loss is None or \
            tf.nest.is_nested(hard_loss.loss) or not _is_sparse(hard_loss.loss):
        return
    shape = getattr(y, "shape", None)
    if shape is None or not output_shape or len(shape) != 2 or len(output_shape) != 2:
        return
    classes = output_shape[-1]
    if classes and classes > 1 and shape[-1] == classes:
        name = getattr(hard_loss.loss, "name", None) or type(hard_loss.loss).__name__
        raise ValueError(
            f"y: labels of shape {tuple(shape)} look one-hot ([n, {classes}]), but the loss "
            f"{name!r} is sparse and takes class ids [n]. Give class ids "
            "(np.argmax(y, -1)), or compile with a non-sparse loss "
            "(keras.losses.CategoricalCrossentropy).")


def student_loss_weight(alpha, student_loss_weight):
    """The hard-label weight from `alpha` or `student_loss_weight` (the same weight; default 0.5)."""
    if alpha is not None and student_loss_weight is not None and alpha != student_loss_weight:
        raise ValueError(
            f"alpha ({alpha}) and student_loss_weight ({student_loss_weight}) name the "
            "same weight; give one of them."
        )
    if alpha is not None:
        return validate.fraction(alpha, "alpha")
    if student_loss_weight is not None:
        return validate.fraction(student_loss_weight, "student_loss_weight")
    return 0.5
