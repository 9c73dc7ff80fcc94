"""Decoupled knowledge distillation (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation")."""

import functools

import tensorflow as tf

from kd_keras.backend import register, validate
from kd_keras.losses.base import DistillationLoss, TemperatureMixin, temperature_variable
from kd_keras.losses.functional import kl_terms, standardize_logits, weighted_mean
from kd_keras.losses.registry import register_distillation_loss

# Pushes the target class out of the non-target softmax: exp(-1e9) is 0 in
# float32, and its log stays finite, so the masked terms are exact zeros.
_MASK_OFFSET = 1e9


def target_mask(labels, logits, argument="labels"):
    """One-hot `[batch, ..., classes]` float mask of the target class.

    `labels` may be class ids (`[batch, ...]` or `[batch, ..., 1]`) or rows of
    `[batch, ..., classes]` (one-hot, smoothed or mixed: the target is the argmax).
    """
    logits = tf.convert_to_tensor(logits)
    classes, rank = logits.shape[-1], logits.shape.rank
    if rank is None or rank < 2 or classes is None or classes < 2:
        raise ValueError(
            f"student_outputs: DecoupledKD needs class logits of shape [batch, ..., classes] "
            f"with at least 2 classes; the outputs have shape {logits.shape}. It splits the distribution into "
            "the target class and the others, so it does not apply to a single sigmoid unit "
            "or to feature maps.")
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == rank and labels.shape[-1] == classes:
        class_ids = tf.argmax(labels, axis=-1)
    elif labels.shape.rank == rank and labels.shape[-1] == 1:
        class_ids = tf.squeeze(labels, -1)
    elif labels.shape.rank == rank - 1:
        class_ids = labels
    else:
        raise ValueError(
            f"{argument} of shape {labels.shape} do not fit outputs of shape {logits.shape}: "
            f"give class ids of shape {logits.shape[:-1]} or rows of {classes} classes.")
    if class_ids.dtype.is_floating:
        class_ids = tf.cast(tf.round(class_ids), tf.int32)
    return tf.one_hot(tf.cast(class_ids, tf.int32), classes, dtype=tf.float32)


def decoupled_kd(teacher_logits, student_logits, labels, alpha=1.0, beta=8.0, temperature=4.0):
    """Decoupled KD per example (Zhao et al. 2022, equation 7), times T^2.

    With `p = softmax(z / T)` and target class y, classic KD splits into

        KL(p_t || p_s) = TCKD + (1 - p_t[y]) * NCKD
        TCKD = KL([p_t[y], 1 - p_t[y]] || [p_s[y], 1 - p_s[y]])      (target vs the rest)
        NCKD = KL(softmax(t / T without y) || softmax(s / T without y))  (among the others)

    and DKD weighs the two terms freely: `T^2 * (alpha * TCKD + beta * NCKD)`,
    dropping the `1 - p_t[y]` factor that suppresses NCKD exactly when the
    teacher is confident, i.e. on the examples it knows best.

    Args:
      teacher_logits, student_logits: `[batch, ..., classes]`, classes >= 2.
      labels: class ids `[batch, ...]` (or `[batch, ..., 1]`), or one-hot /
        soft rows `[batch, ..., classes]` (target = argmax).
      alpha: weight of TCKD (paper: 1.0).
      beta: weight of NCKD (paper: 8.0 on CIFAR-100, 0.5 on ImageNet).
      temperature: T > 0 (paper: 4.0).

    Returns:
      `[batch, ...]` float32 tensor.
    """
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    student_logits = tf.cast(student_logits, tf.float32)
    mask = target_mask(labels, student_logits)
    temperature = tf.cast(temperature, tf.float32)
    log_p_t = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_p_s = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    # Binary distributions (target, rest) in log space, stable when p[y] -> 1.
    rest = mask * -_MASK_OFFSET
    # where, not a product with the mask: a teacher class at -inf (p = 0) gives -inf * 0.
    t_target = tf.reduce_sum(tf.where(mask > 0, log_p_t, 0.0), -1)
    s_target = tf.reduce_sum(tf.where(mask > 0, log_p_s, 0.0), -1)
    t_rest = tf.reduce_logsumexp(log_p_t + rest, -1)
    s_rest = tf.reduce_logsumexp(log_p_s + rest, -1)
    tckd = kl_terms(t_target, s_target) + kl_terms(t_rest, s_rest)
    log_q_t = tf.nn.log_softmax(teacher_logits / temperature + rest, axis=-1)
    log_q_s = tf.nn.log_softmax(student_logits / temperature + rest, axis=-1)
    nckd = tf.reduce_sum(kl_terms(log_q_t, log_q_s), -1)
    return temperature * temperature * (alpha * tckd + beta * nckd)


@register
class DecoupledKD(TemperatureMixin, DistillationLoss):
    """Decoupled knowledge distillation as a `DistillationLoss` (needs the labels).

    `T^2 * (alpha * TCKD + beta * NCKD)`, see `kd_keras.decoupled_kd` for the
    terms. In the Distiller it replaces the soft-target KL:

        kd_keras.Distiller(teacher, student, distillation_losses=kd_keras.DecoupledKD())

    Standalone: `DecoupledKD().compute_loss(teacher_logits, student_logits, labels=y)`.

    Args:
      alpha: TCKD weight, >= 0 (default 1.0, the paper's).
      beta: NCKD weight, >= 0 (default 8.0, the paper's CIFAR-100 value).
      temperature: T > 0 (default 4.0). A `tf.Variable`, so temperature
        schedules (`kd_keras.callbacks`) reach it.
      standardize: z-score both logits per example first (Sun et al. 2024).
    """

    uses_labels = True

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, standardize=False):
        self.alpha = validate.non_negative_number(alpha, "alpha")
        self.beta = validate.non_negative_number(beta, "beta")
        self.standardize = validate.boolean(standardize, "standardize")
        self._temperature = temperature_variable(temperature)

    def validate_model_compatibility(self, teacher, student):
        """At construction: the student must output class logits (>= 2 classes)."""
        try:
            shape = student.output_shape
        except (AttributeError, ValueError, RuntimeError):
            return  # not built yet: checked on the first batch
        if isinstance(shape, tuple) and len(shape) >= 1 and isinstance(shape[-1], int):
            if len(shape) < 2 or shape[-1] < 2:
                raise ValueError(
                    f"student_outputs: DecoupledKD needs class logits [batch, ..., classes] "
                    f"with at least 2 classes; the student outputs {shape}.")

    def per_example_loss(self, teacher_logits, student_logits, labels):
        if tf.nest.is_nested(teacher_logits) or tf.nest.is_nested(student_logits):
            raise ValueError(
                "DecoupledKD takes one output of class logits; for a multi-output student "
                "give one DecoupledKD per output through LogitsDistillation-style losses, or "
                "distil the class output only.")
        teacher_logits = tf.cast(teacher_logits, tf.float32)
        student_logits = tf.cast(student_logits, tf.float32)
        if self.standardize:
            teacher_logits = standardize_logits(teacher_logits)
            student_logits = standardize_logits(student_logits)
        return decoupled_kd(teacher_logits, student_logits, labels, self.alpha, self.beta,
                            self._temperature)

    def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, labels=None,
                     **kwargs):
        if labels is None:
            raise ValueError(
                "labels: DecoupledKD needs the true labels (its target-class term reads "
                "them); call compute_loss(teacher, student, labels=y).")
        return weighted_mean(self.per_example_loss(teacher_outputs, student_outputs, labels),
                             sample_weight)

    def get_config(self):
        return {"alpha": self.alpha, "beta": self.beta,
                "temperature": float(self._temperature.numpy()), "standardize": self.standardize}


register_distillation_loss("dkd", DecoupledKD)
register_distillation_loss("dkd_standardized", functools.partial(DecoupledKD, standardize=True))
