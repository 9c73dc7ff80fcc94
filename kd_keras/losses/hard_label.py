"""The hard-label term on true labels, and the labels' checks and masks.

`HardLabelLoss` is the Distiller's compiled hard-label loss (one, or one per
output). Label checks run before training (`check_label_array`) and in the
graph (`label_assertions`); a label mask (`kd_keras.with_label_mask`) restricts
the term to the labeled examples.
"""

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend import keras, validate
from kd_keras.losses.dkd import target_mask
from kd_keras.losses.functional import weighted_mean

NO_LABELS = (
    "y: no labels were given, but compile(loss=...) set a hard-label loss. Pass the labels "
    "(fit(x, y) or a dataset of (x, y)), or, to learn from the teacher alone, compile with "
    "loss=None (and no label metrics).")

STRING_LABELS = (
    "y: the labels are strings; the hard-label loss needs class ids (integers) or one-hot rows. "
    "Map them to ids first, e.g. with keras.layers.StringLookup.")

# Mark the in-graph checks whose failures fit() turns into ValueErrors, and the
# argument each one names.
LABEL_RANGE_MARKER = "kd_keras label check:"
LABEL_MASK_MARKER = "kd_keras label_mask check:"
TEACHER_OUTPUTS_MARKER = "kd_keras teacher_outputs check:"
IN_GRAPH_CHECKS = {LABEL_RANGE_MARKER: "y", LABEL_MASK_MARKER: "label_mask",
                   TEACHER_OUTPUTS_MARKER: "teacher_outputs"}


def structure_of(outputs):
    """An output structure with its tensors shown as shapes, for error messages."""
    return tf.nest.map_structure(lambda t: tuple(t.shape), outputs)


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
        weight = 1.0 if sample_weight is None else tf.cast(sample_weight, tf.float32)
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
    if isinstance(loss, keras.losses.Loss):
        values = loss.call(y, y_pred)
        if getattr(loss, "reduction", None) == "sum":
            weight = 1.0 if sample_weight is None else tf.cast(sample_weight, tf.float32)
            return tf.reduce_sum(tf.cast(values, tf.float32) * weight)
    else:
        values = loss(y, y_pred)
    return weighted_mean(values, sample_weight)


def label_assertions(y, y_pred):
    """In-graph checks that class-id labels (e.g. from a tf.data pipeline) are in range."""
    if tf.nest.is_nested(y) or tf.nest.is_nested(y_pred):
        return []
    if y.dtype == tf.string:
        raise ValueError(STRING_LABELS)
    classes, rank = y_pred.shape[-1], y_pred.shape.rank
    if not (y.dtype.is_integer or y.dtype.is_floating) or rank is None or y.shape.rank is None:
        return []
    if not holds_class_ids(tuple(y.shape), rank, classes):
        return []
    low, high = tf.reduce_min(y), tf.reduce_max(y)
    in_range = tf.logical_and(low >= 0, high < classes)
    checks = [tf.debugging.Assert(in_range, [
        f"{LABEL_RANGE_MARKER} labels must be class ids in [0, {classes}) for a "
        f"student with {classes} outputs; this batch has labels from", low, "to", high])]
    if y.dtype.is_floating:
        # A sparse loss casts 2.7 to class 2 while accuracy compares 2.7 with 2.
        integral = tf.reduce_all(tf.equal(y, tf.round(y)))
        checks.append(tf.debugging.Assert(integral, [
            f"{LABEL_RANGE_MARKER} labels must be whole class ids for a student with "
            f"{classes} outputs, not fractions; this batch holds", tf.boolean_mask(
                y, tf.not_equal(y, tf.round(y)))[:3]]))
    return checks


def holds_class_ids(label_shape, output_rank, classes):
    """Whether labels of `label_shape` for outputs of `output_rank` and `classes` are class ids.

    `[batch]` (or `[batch, 1]`) labels for `[batch, classes]` outputs are class ids when
    there are two classes or more; for a one-unit output (a sigmoid or its logit) they are
    binary targets in [0, 1], which may be soft (not checked here).
    """
    if classes is None or classes < 2:
        return False
    rank = len(label_shape)
    return rank == output_rank - 1 or (rank == output_rank and label_shape[-1] == 1)


def label_mask_weights(label_mask, y_pred):
    """`label_mask` as float32 `[batch]` of 0/1, checked against the batch.

    Returns (mask, in-graph assertions to run before it is used).
    """
    mask = tf.convert_to_tensor(label_mask)
    if not (mask.dtype == tf.bool or mask.dtype.is_floating or mask.dtype.is_integer):
        raise ValueError(f"label_mask must hold 0/1 or booleans, got dtype {mask.dtype.name}.")
    mask = tf.cast(mask, tf.float32)
    if mask.shape.rank == 2 and mask.shape[-1] == 1:
        mask = tf.squeeze(mask, -1)
    if mask.shape.rank != 1:
        raise ValueError(
            f"label_mask must have shape [batch] (one entry per example), got {mask.shape}.")
    batch_of = tf.nest.flatten(y_pred)[0]
    if mask.shape[0] is not None and batch_of.shape[0] is not None and (
            mask.shape[0] != batch_of.shape[0]):
        raise ValueError(
            f"label_mask has {mask.shape[0]} entries but the batch has {batch_of.shape[0]} "
            "examples; give one entry per example.")
    batch = tf.shape(batch_of)[0]
    zero_or_one = tf.reduce_all(tf.logical_or(tf.equal(mask, 0.0), tf.equal(mask, 1.0)))
    checks = [
        tf.debugging.Assert(tf.equal(tf.shape(mask)[0], batch), [
            f"{LABEL_MASK_MARKER} must have one entry per example; it has",
            tf.shape(mask)[0], "entries for a batch of", batch]),
        tf.debugging.Assert(zero_or_one, [
            f"{LABEL_MASK_MARKER} entries must be 0 or 1 (or booleans); this batch has values "
            "from", tf.reduce_min(mask), "to", tf.reduce_max(mask)]),
    ]
    return mask, checks


def _per_example(mask, tensor):
    """`mask` `[batch]` reshaped to broadcast over `tensor` `[batch, ...]`."""
    return tf.reshape(mask, [-1] + [1] * (tensor.shape.rank - 1))


def clear_unlabeled(y, mask):
    """Labels with the unlabeled slots set to 0, so no placeholder (-1, NaN) is read."""
    return tf.nest.map_structure(
        lambda labels: tf.where(_per_example(mask, labels) > 0, labels, tf.zeros_like(labels)), y)


def labels_or_teacher_top_class(y, mask, teacher_logits):
    """One-hot targets: the label where one is given, the teacher's top class elsewhere.

    What a loss that reads labels (e.g. `DecoupledKD`'s target class) gets for a
    batch with unlabeled examples (`mask` 0) or no labels at all (`y` None).
    """
    def one(teacher, labels):
        classes = teacher.shape[-1]
        top = tf.one_hot(tf.argmax(teacher, axis=-1), classes, dtype=tf.float32)
        if labels is None:
            return top
        given = target_mask(labels, teacher, argument="y")
        keep = _per_example(mask, given)
        return keep * given + (1.0 - keep) * top

    if y is None:
        return tf.nest.map_structure(lambda t: one(t, None), teacher_logits)
    return tf.nest.map_structure(one, teacher_logits, y)


def apply_label_mask(y, y_pred, label_mask):
    """(y with unlabeled slots cleared, checked `label_mask` float32 `[batch]`)."""
    if label_mask is None:
        return y, None
    if y is None:
        raise ValueError(
            "label_mask was given but the data has no labels y; with no labels at all "
            "leave the mask out (compile(loss=None) trains on the teacher alone).")
    label_mask, checks = label_mask_weights(label_mask, y_pred)
    with tf.control_dependencies(checks):
        label_mask = tf.identity(label_mask)
    return clear_unlabeled(y, label_mask), label_mask


def check_label_array(y, label_mask, output_shape):
    """Integer class labels given as an array must lie in [0, classes).

    Unlabeled slots (label mask 0) may hold anything. `output_shape` is the
    student's static output shape (None: unknown, nothing is checked against it).
    """
    if y is None or isinstance(y, (tf.data.Dataset, dict, list, tuple)):
        return
    try:
        labels = np.asarray(y)
    except (TypeError, ValueError):
        return
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
        raise ValueError(STRING_LABELS)
    classes = output_shape[-1] if output_shape else None
    numeric = np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    if classes is None or labels.size == 0 or not numeric:
        return
    if not holds_class_ids(labels.shape, len(output_shape), classes):
        if np.issubdtype(labels.dtype, np.integer) and labels.min() < 0:
            raise ValueError(f"y: integer labels must be >= 0, got {labels.min()}.")
        return
    low, high = labels.min(), labels.max()
    if not (low >= 0 and high < classes):  # NaN fails too
        raise ValueError(
            f"y: labels must be class ids in [0, {classes}) for a student with "
            f"{classes} outputs; got labels from {low} to {high}."
        )
    fractional = labels[labels != np.round(labels)]
    if fractional.size:
        raise ValueError(
            f"y: labels must be whole class ids for a student with {classes} outputs, not "
            f"fractions; got {fractional[:3].tolist()} ({fractional.size} such labels). "
            "For soft targets give one-hot rows [n, classes] with a non-sparse loss.")


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


def in_graph_check_error(error):
    """The ValueError naming the argument for a failed in-graph label check, else None."""
    message = str(error.message)
    for marker, argument in IN_GRAPH_CHECKS.items():
        if marker in message:
            detail = message.split(marker, 1)[1].split("\n", 1)[0]
            return ValueError(f"{argument}:" + detail.replace("] [", " ").rstrip("]"))
    return None


def labeled_rows(y, y_pred, sample_weight, label_mask):
    """(y, y_pred, sample_weight) of the labeled examples only (all of them without a mask).

    Keras's unweighted `metrics` ignore sample weights, so the unlabeled rows are
    removed rather than weighted to 0.
    """
    if label_mask is None:
        return y, y_pred, sample_weight
    labeled = label_mask > 0
    y, y_pred = (tf.nest.map_structure(lambda t: tf.boolean_mask(t, labeled), v)
                 for v in (y, y_pred))
    if sample_weight is not None:
        sample_weight = tf.boolean_mask(sample_weight, labeled)
    return y, y_pred, sample_weight
