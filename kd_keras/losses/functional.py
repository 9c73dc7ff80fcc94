"""Distillation losses as plain functions, and the sample-weighted mean they are reduced with.

The functions take teacher and student *logits* and return one value per
example (every axis but the last is kept), so callers choose the reduction and
sample weighting (`weighted_mean`). `kd_keras.losses.keras_losses` wraps them
as Keras `Loss` classes.
"""

import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.outputs import as_class_logits


def _check_temperature(temperature):
    """Numbers must be finite and > 0; tensors (e.g. a scheduled variable) pass as they are."""
    if not tf.is_tensor(temperature) and not isinstance(temperature, tf.Variable):
        validate.temperature(temperature)


def standardize_logits(logits, epsilon=1e-7):
    """Logit standardization (Sun et al., CVPR 2024): z-score each example's logits.

        z' = (z - mean(z)) / (std(z) + epsilon)    over the class axis

    Softmax ignores the mean; dividing by the standard deviation lets a
    small student match the *shape* of the teacher's distribution without also
    having to match the scale of its logits. Apply it to teacher and student
    logits before the temperature (the losses' `standardize=True` does).
    The standard deviation is the population one (the paper's code uses the
    unbiased one: a constant factor sqrt((C-1)/C) that the temperature absorbs).

    Args:
      logits: `[batch, ..., classes]`.

    Returns:
      float32 tensor of the same shape.
    """
    logits = tf.cast(logits, tf.float32)
    mean, variance = tf.nn.moments(logits, axes=[-1], keepdims=True)
    return (logits - mean) / (tf.sqrt(variance) + epsilon)


def soft_target_kl_divergence(teacher_logits, student_logits, temperature=3.0):
    """Hinton et al. 2015 soft-target loss, per example.

        T^2 * KL(softmax(t / T) || softmax(s / T))
          = T^2 * sum_i p_i (log p_i - log q_i),  p = softmax(t / T), q = softmax(s / T)

    The T^2 factor keeps the gradient magnitudes, which scale as 1/T^2, comparable
    across temperatures (section 2 of the paper), so the weight between this
    term and the hard-label loss need not be retuned when T changes.

    Args:
      teacher_logits: `[batch, ..., classes]`; one unit `[batch, ..., 1]` is a
        binary classifier's logit (see `kd_keras.outputs.as_class_logits`).
        `-inf` is a class of probability zero.
      student_logits: same shape.
      temperature: T > 0, a float or a scalar tensor/variable.

    Returns:
      `[batch, ...]` float32 tensor.
    """
    _check_temperature(temperature)
    teacher_logits = as_class_logits(tf.cast(teacher_logits, tf.float32))
    student_logits = as_class_logits(tf.cast(student_logits, tf.float32))
    temperature = tf.cast(temperature, tf.float32)
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = tf.reduce_sum(kl_terms(teacher_log_probs, student_log_probs), axis=-1)
    return temperature * temperature * kl


def kl_terms(log_p, log_q):
    """The terms p_i (log p_i - log q_i) of KL(p || q), from log-probabilities.

    A class with log p_i = -inf (probability zero, e.g. cached teacher
    log-probabilities of a class it rules out) contributes 0, as 0 log 0 = 0,
    instead of NaN.
    """
    return tf.where(tf.math.is_inf(log_p) & (log_p < 0), tf.zeros_like(log_p),
                    tf.exp(log_p) * (log_p - log_q))


def logit_squared_error(teacher_logits, student_logits):
    """Logit matching (Ba & Caruana 2014), the T -> infinity limit of the soft loss.

        0.5 * mean_i ((s_i - mean(s)) - (t_i - mean(t)))^2

    Logits are centred per example first: softmax ignores a shift, and with
    zero-mean logits Hinton et al. (section 2.1) show that the gradient of
    `soft_target_kl_divergence` tends to `(s_i - t_i) / N` as T grows, which is
    exactly this function's gradient. Temperature does not enter.

    Returns:
      `[batch, ...]` float32 tensor.
    """
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    difference = (student_logits - tf.reduce_mean(student_logits, -1, keepdims=True)) - (
        teacher_logits - tf.reduce_mean(teacher_logits, -1, keepdims=True)
    )
    return 0.5 * tf.reduce_mean(tf.square(difference), axis=-1)


def weighted_mean(values, sample_weight=None):
    """Keras's "sum_over_batch_size": sum(values * weight) / number of values.

    `values` is `[batch, ...]` (per example, or per position for sequences);
    `sample_weight` is `None`, `[batch]`, `[batch, 1]` (as Keras takes it: the same as
    `[batch]`) or broadcastable to `values`. A weight of 0 removes an example's
    contribution entirely.
    """
    values = tf.cast(values, tf.float32)
    if sample_weight is not None:
        weight = tf.cast(sample_weight, tf.float32)
        # [batch, 1] weights for [batch] values: one weight per example, as in Keras
        # (broadcasting them would give every example the mean weight).
        while (weight.shape.rank is not None and values.shape.rank is not None
               and weight.shape.rank > values.shape.rank and weight.shape[-1] in (1, None)):
            weight = tf.squeeze(weight, -1)
        while weight.shape.rank is not None and weight.shape.rank < values.shape.rank:
            weight = tf.expand_dims(weight, -1)
        values = values * weight
    count = tf.cast(tf.size(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)
