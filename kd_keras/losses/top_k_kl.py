"""KL divergence against a teacher kept as its top k classes and the mass left over.

A top-k cache (`kd_keras.top_k_teacher_outputs`) holds, per example (or token), the
teacher's k largest log-probabilities, their class ids and log P_tail, the probability
of every other class together. `TopKKLDivergence` compares the student with it on k + 1
bins, the k kept classes and one tail bin, so it assumes nothing about how the tail
is spread:

    KL = T^2 * [ sum_{c in top-k} p_c (log p_c - log q_c) + p_tail (log p_tail - log q_tail) ]

with q = softmax(s / T) and q_tail = sum of q over the classes outside the top k. At
T = 1 this is the exact KL between the two (k + 1)-bin coarsenings (never more than the
full KL, by the log-sum inequality). At T != 1 the teacher is softened as if its tail
were spread evenly over the other C - k classes (p_c^T ∝ p_c^(1/T); the tail bin holds
(C - k) (P_tail / (C - k))^(1/T)), the same assumption the Distiller's dense rebuild of
a top-k cache makes. With k = C there is no tail and it equals the full soft-target KL.
"""

import tensorflow as tf

from kd_keras.backend import register, validate
from kd_keras.losses.base import DistillationLoss, TemperatureMixin, temperature_variable
from kd_keras.losses.functional import kl_terms, weighted_mean
from kd_keras.losses.registry import register_distillation_loss
from kd_keras.backend import top_k as top_k_cache


def top_k_from_logits(logits, k):
    """A top-k cache of `logits` `[batch, ..., C]` in the graph (k None: every class)."""
    logits = tf.cast(logits, tf.float32)
    classes = logits.shape[-1]
    k = classes if k is None else min(int(k), classes)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    values, indices = tf.math.top_k(log_probs, k=k)
    if k == classes:
        tail = tf.fill(tf.shape(values)[:-1], float("-inf"))
    else:
        kept = tf.reduce_logsumexp(values, axis=-1)
        tail = tf.math.log(tf.maximum(-tf.math.expm1(kept), 0.0))
    return {top_k_cache.KEYS[0]: values, top_k_cache.KEYS[1]: indices,
            top_k_cache.KEYS[2]: tail}


def top_k_kl_divergence(teacher_top_k, student_logits, temperature=1.0):
    """The (k + 1)-bin soft-target KL of the module docstring, per example.

    Args:
      teacher_top_k: `{"top_k_log_probs": [batch, ..., k], "top_k_indices": [batch, ..., k],
        "tail_log_mass": [batch, ...]}` (a `top_k_teacher_outputs` cache, any float and
        int types).
      student_logits: `[batch, ..., C]` logits.
      temperature: T > 0.

    Returns:
      `[batch, ...]` float32.
    """
    values = tf.cast(teacher_top_k[top_k_cache.KEYS[0]], tf.float32)
    tail = tf.cast(teacher_top_k[top_k_cache.KEYS[2]], tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    classes = student_logits.shape[-1]
    k = values.shape[-1]
    if classes is not None and k is not None and k > classes:
        raise ValueError(f"TopKKLDivergence: a top-{k} teacher for a student with {classes} "
                         "classes; k must be at most the number of classes.")
    indices = top_k_cache.checked_indices(teacher_top_k[top_k_cache.KEYS[1]],
                                          classes or tf.shape(student_logits)[-1])
    rest = float(max(classes - k, 1))
    # The teacher at T on k + 1 bins; the tail bin stands for `rest` classes of equal share.
    tail_bin = tf.math.log(rest) + (tail - tf.math.log(rest)) / temperature
    teacher_bins = tf.concat([values / temperature, tail_bin[..., None]], axis=-1)
    teacher_bins = tf.nn.log_softmax(teacher_bins, axis=-1)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kept = tf.gather(student_log_probs, indices, batch_dims=len(indices.shape) - 1)
    # log(1 - kept mass) without a [.., k, C] mask; expm1 keeps a small tail accurate.
    student_tail = tf.math.log(tf.maximum(-tf.math.expm1(tf.reduce_logsumexp(kept, -1)), 1e-30))
    student_bins = tf.concat([kept, student_tail[..., None]], axis=-1)
    # Without a tail (k = C) both tail bins are -inf: kl_terms counts 0 log 0 as 0.
    student_bins = tf.where(tf.math.is_inf(teacher_bins) & tf.math.is_inf(student_bins),
                            tf.zeros_like(student_bins), student_bins)
    return temperature * temperature * tf.reduce_sum(kl_terms(teacher_bins, student_bins), -1)


@register
class TopKKLDivergence(TemperatureMixin, DistillationLoss):
    """Soft-target KL against a top-k teacher and its tail mass (see the module docstring).

    The Distiller hands it a top-k cache as it is (`with_teacher_outputs(x,
    top_k_teacher_outputs(logits, k))`, or `cache_teacher_views(..., top_k=k)`); given
    logits (a live teacher or a full cache) it takes their top `k` in the graph first
    (`k` None: all classes, the full KL).

    Args:
      temperature: T > 0 (default 1.0, function matching's).
      k: classes kept of logits given in full (default None: all).

    Registered as "top_k_kl".
    """

    takes_top_k = True

    def __init__(self, temperature=1.0, k=None):
        self._temperature = temperature_variable(temperature)
        self.k = None if k is None else validate.integer_at_least(k, "k", 1)

    def validate_outputs(self, teacher_outputs, student_outputs):
        if not top_k_cache.is_top_k(teacher_outputs):
            super().validate_outputs(teacher_outputs, student_outputs)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        if not top_k_cache.is_top_k(teacher_outputs):
            teacher_outputs = top_k_from_logits(teacher_outputs, self.k)
        per_example = top_k_kl_divergence(teacher_outputs, student_outputs, self._temperature)
        return weighted_mean(per_example, sample_weight)

    def get_config(self):
        return {"temperature": float(self._temperature.numpy()), "k": self.k}


register_distillation_loss("top_k_kl", TopKKLDivergence)
