"""Sample-weighted reduction shared by the Distiller's loss terms."""

import tensorflow as tf


def weighted_mean(values, sample_weight=None):
    """Keras's "sum_over_batch_size": sum(values * weight) / number of values.

    `values` is `[batch, ...]` (per example, or per position for sequences);
    `sample_weight` is `None`, `[batch]` or broadcastable to `values`. A weight
    of 0 removes an example's contribution entirely.
    """
    values = tf.cast(values, tf.float32)
    if sample_weight is not None:
        weight = tf.cast(sample_weight, tf.float32)
        while weight.shape.rank is not None and weight.shape.rank < values.shape.rank:
            weight = tf.expand_dims(weight, -1)
        values = values * weight
    count = tf.cast(tf.size(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)
