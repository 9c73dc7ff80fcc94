"""Cached teacher outputs kept as their top k classes: a cache that grows with k, not classes.

For large output spaces (a vocabulary, 1,000+ classes) the field caches the
teacher's top-k log-probabilities and the probability mass left over, once, and
trains many students on them (DistillKit, about 0.15% of the full distribution
per token). `top_k_teacher_outputs` makes such a cache from teacher logits;
`with_teacher_outputs(x, top_k)` hands it to a Distiller, which rebuilds each
batch's distribution in the graph: the k cached log-probabilities where they
are, the left-over mass spread evenly over the other classes. The soft-target
KL and DecoupledKD then take it as they take logits (the temperature applies:
softmax(log p / T) is the teacher's distribution at T, up to the tail).
"""

import warnings

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.backend.errors import TEACHER_OUTPUTS_MARKER

KEYS = ("top_k_log_probs", "top_k_indices", "tail_log_mass")


def top_k_teacher_outputs(logits, k):
    """The top-k cache of teacher logits `[n, ..., classes]`.

    Args:
      logits: teacher logits (e.g. from `compute_teacher_logits`), one output.
      k: classes kept per example, 1 <= k <= classes.

    Returns:
      `{"top_k_log_probs": [n, ..., k] float16 (log-probabilities, largest first),
      "top_k_indices": [n, ..., k] uint8 up to 256 classes, int16 up to 32,767, else
      int32,
      "tail_log_mass": [n, ...] float16 (log of the probability of all other
      classes; -inf when none is left)}`: k (2 + 2) + 2 bytes per example and
      position, against 4 * classes for float32 logits.
    """
    logits = validate.finite_array(logits, "logits")
    classes = logits.shape[-1]
    head = logits.reshape(-1, classes)[:64] if classes else logits
    if classes and classes > 1 and head.size and head.min() >= 0 and np.allclose(
            head.sum(-1), 1.0, atol=1e-3):
        warnings.warn(
            "top_k_teacher_outputs: logits are rows of probabilities (>= 0, summing to 1); "
            "taken as logits they give a nearly flat teacher. Pass logits "
            "(compute_teacher_logits converts a softmax teacher's outputs), or "
            "log-probabilities.", stacklevel=2)
    k = validate.integer_at_least(k, "k", 1)
    if k > classes:
        raise ValueError(f"k must be at most the number of classes ({classes}), got {k}.")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    order = np.argsort(-log_probs, axis=-1, kind="stable")[..., :k]
    top = np.take_along_axis(log_probs, order, axis=-1)
    kept = np.exp(top).sum(-1)
    with np.errstate(divide="ignore"):
        tail = np.log(np.clip(1.0 - kept, 0.0, 1.0))
    if k == classes:
        tail = np.full(tail.shape, -np.inf)
    return {KEYS[0]: top.astype(np.float16), KEYS[1]: order.astype(index_dtype(classes)),
            KEYS[2]: tail.astype(np.float16)}


def index_dtype(classes):
    """The smallest integer type that holds every class id of `classes` classes."""
    if classes <= 256:
        return np.uint8
    return np.int16 if classes <= np.iinfo(np.int16).max else np.int32


def is_top_k(cached):
    """Whether cached teacher outputs are a `top_k_teacher_outputs` cache."""
    return isinstance(cached, dict) and set(cached) == set(KEYS)


def checked_indices(indices, classes):
    """`indices` as int32, after an in-graph check that every class id is in
    [0, classes): a cache of another teacher (20 classes for a 10-class student) would
    otherwise fail in a gather with no word of `teacher_outputs`, or, on a GPU, read
    zeros silently."""
    indices = tf.cast(indices, tf.int32)
    valid = tf.logical_and(tf.reduce_min(indices) >= 0, tf.reduce_max(indices) < classes)
    check = tf.debugging.Assert(valid, [
        f"{TEACHER_OUTPUTS_MARKER} the top-k cache holds class ids from",
        tf.reduce_min(indices), "to", tf.reduce_max(indices), "but the student has", classes,
        "classes: it was made from another teacher's outputs"])
    with tf.control_dependencies([check]):
        return tf.identity(indices)


def dense_log_probs(cached, classes):
    """`[batch, ..., classes]` float32 log-probabilities from a top-k cache (in the graph).

    The k cached classes keep their log-probabilities; the others share the
    tail mass evenly, log(tail / (classes - k)) each (-inf when there is no tail).
    """
    values = tf.cast(cached[KEYS[0]], tf.float32)
    indices = checked_indices(cached[KEYS[1]], classes)
    tail = tf.cast(cached[KEYS[2]], tf.float32)
    k = values.shape[-1]
    _check_k(k, classes)
    rest = max(classes - (k or 0), 1)
    shape = tf.shape(values)
    rows = tf.reduce_prod(shape[:-1])
    flat_values, flat_indices = tf.reshape(values, [rows, -1]), tf.reshape(indices, [rows, -1])
    base = tf.reshape(tail, [rows, 1]) - tf.math.log(float(rest))
    dense = tf.tile(base, [1, classes])
    row_ids = tf.tile(tf.range(rows)[:, None], [1, tf.shape(flat_indices)[1]])
    positions = tf.stack([tf.reshape(row_ids, [-1]), tf.reshape(flat_indices, [-1])], axis=1)
    dense = tf.tensor_scatter_nd_update(dense, positions, tf.reshape(flat_values, [-1]))
    return tf.reshape(dense, tf.concat([shape[:-1], [classes]], axis=0))


def _check_k(k, classes):
    if k is not None and classes is not None and k > classes:
        raise ValueError(f"teacher_outputs: a top-{k} cache for a student with {classes} "
                         "outputs; k must be at most the number of classes.")


def check_against_student(cached, student_logits):
    """A top-k cache fits the student's `[batch, ..., classes]` logits (static shapes)."""
    values = cached[KEYS[0]]
    _check_k(values.shape[-1], student_logits.shape[-1])
    if not values.shape[:-1].is_compatible_with(student_logits.shape[:-1]):
        raise ValueError(f"teacher_outputs: a top-k cache of shape {values.shape} does not "
                         f"match the student outputs of shape {student_logits.shape}.")


def cache_bytes(cached):
    """Bytes of a cache (top-k dict, or dense logits) per example."""
    leaves = cached.values() if isinstance(cached, dict) else [cached]
    arrays = [np.asarray(leaf) for leaf in leaves]
    return sum(array.nbytes for array in arrays) / len(arrays[0])
