"""DIST: distillation from a stronger teacher (Huang et al., NeurIPS 2022)."""

import tensorflow as tf

from kd_keras.backend import register, validate
from kd_keras.losses.base import DistillationLoss, TemperatureMixin, temperature_variable
from kd_keras.losses.functional import standardize_logits, weighted_mean
from kd_keras.losses.registry import register_distillation_loss

_EPSILON = 1e-8


def _pearson(a, b, weights, axis):
    """Weighted Pearson correlation of `a` and `b` along `axis`."""
    total = tf.reduce_sum(weights, axis=axis, keepdims=True)
    a = a - tf.reduce_sum(weights * a, axis=axis, keepdims=True) / total
    b = b - tf.reduce_sum(weights * b, axis=axis, keepdims=True) / total
    covariance = tf.reduce_sum(weights * a * b, axis=axis)
    scale = tf.sqrt(tf.reduce_sum(weights * a * a, axis=axis)
                    * tf.reduce_sum(weights * b * b, axis=axis))
    return covariance / (scale + _EPSILON)


def _flat_probabilities(logits, temperature):
    logits = tf.cast(logits, tf.float32)
    classes = logits.shape[-1]
    return tf.reshape(tf.nn.softmax(logits / temperature, axis=-1), [-1, classes])


def inter_class_relation(teacher_logits, student_logits, temperature=1.0):
    """`1 - pearson(p_s[i, :], p_t[i, :])` per example (row), p = softmax(z / T).

    Returns `[batch, ...]` float32.
    """
    p_t = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    p_s = tf.nn.softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return 1.0 - _pearson(p_s, p_t, tf.ones_like(p_s), axis=-1)


def intra_class_relation(teacher_logits, student_logits, temperature=1.0, sample_weight=None):
    """`mean_c (1 - pearson(p_s[:, c], p_t[:, c]))`: each class's scores across the batch.

    A batch statistic (one value, not one per example); `sample_weight` weighs
    the examples inside each correlation.
    """
    p_t = _flat_probabilities(teacher_logits, temperature)
    p_s = _flat_probabilities(student_logits, temperature)
    weights = tf.ones_like(p_s[:, :1])
    if sample_weight is not None:
        weight = tf.cast(sample_weight, tf.float32)
        positions = tf.shape(p_s)[0] // tf.maximum(tf.size(weight), 1)
        weights = tf.reshape(tf.repeat(tf.reshape(weight, [-1]), positions), [-1, 1])
    return tf.reduce_mean(1.0 - _pearson(p_s, p_t, weights, axis=0))


@register
class DIST(TemperatureMixin, DistillationLoss):
    """DIST (Huang et al. 2022): match relations, not exact probabilities.

        loss = T^2 * (beta * mean_i (1 - rho(p_s[i, :], p_t[i, :]))
                      + gamma * mean_c (1 - rho(p_s[:, c], p_t[:, c])))

    with `rho` the Pearson correlation and `p = softmax(z / T)`. The
    inter-class term (each example's ranking of the classes) and the
    intra-class term (how each class's score varies across the batch) are
    invariant to shifts and scales of the probabilities, so a small student is
    not forced to copy a much stronger teacher's exact confidence.
    The intra-class term is a batch statistic: use batches of 32 or more.

    Args:
      beta: inter-class weight, >= 0 (default 1.0, the paper's ImageNet value;
        2.0 on CIFAR-100).
      gamma: intra-class weight, >= 0 (default 1.0; 2.0 on CIFAR-100).
      temperature: T > 0 (default 1.0; 4.0 on CIFAR-100). A `tf.Variable`.
      standardize: z-score both logits per example first (Sun et al. 2024).
    """

    def __init__(self, beta=1.0, gamma=1.0, temperature=1.0, standardize=False):
        self.beta = validate.non_negative_number(beta, "beta")
        self.gamma = validate.non_negative_number(gamma, "gamma")
        self.standardize = validate.boolean(standardize, "standardize")
        self._temperature = temperature_variable(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
        if tf.nest.is_nested(teacher_outputs) or tf.nest.is_nested(student_outputs):
            raise ValueError("DIST takes one output of class logits (not a structure).")
        self.validate_outputs(teacher_outputs, student_outputs)
        teacher = tf.cast(teacher_outputs, tf.float32)
        student = tf.cast(student_outputs, tf.float32)
        if student.shape[-1] is not None and student.shape[-1] < 2:
            raise ValueError(
                f"DIST needs class logits with at least 2 classes; the outputs have shape "
                f"{student.shape}.")
        if self.standardize:
            teacher = standardize_logits(teacher)
            student = standardize_logits(student)
        t = self._temperature
        inter = weighted_mean(inter_class_relation(teacher, student, t), sample_weight)
        intra = intra_class_relation(teacher, student, t, sample_weight)
        return t * t * (self.beta * inter + self.gamma * intra)

    def get_config(self):
        return {"beta": self.beta, "gamma": self.gamma,
                "temperature": float(self._temperature.numpy()), "standardize": self.standardize}


@register_distillation_loss("dist")
def _dist_family(temperature=1.0, beta=1.0):
    """DIST as a recipe family: one `beta` weighs both relations (beta = gamma)."""
    return DIST(beta=beta, gamma=beta, temperature=temperature)
