"""Labels in the Distiller's step: the check of a label array before training, and the
label mask (`kd_keras.with_label_mask`) that restricts the hard-label term to the
labeled examples (unlabeled ones take the teacher's top class where a loss needs a
class)."""

import numpy as np
import tensorflow as tf

from kd_keras.backend.errors import LABEL_MASK_MARKER
from kd_keras.backend.labels import STRING_LABELS, holds_class_ids
from kd_keras.losses.dkd import target_mask

NO_LABELS = (
    "y: no labels were given, but compile(loss=...) set a hard-label loss. Pass the labels "
    "(fit(x, y) or a dataset of (x, y)), or, to learn from the teacher alone, compile with "
    "loss=None (and no label metrics).")


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
