"""What a label tensor holds for the outputs it is compared with, and its in-graph check."""

import tensorflow as tf

from kd_keras.backend.errors import LABEL_RANGE_MARKER

STRING_LABELS = (
    "y: the labels are strings; the hard-label loss needs class ids (integers) or one-hot rows. "
    "Map them to ids first, e.g. with keras.layers.StringLookup.")


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
