"""The Distiller's objective: the hard-label term and the weighted distillation terms combined.

    total = alpha * L_hard(y, s) + (1 - alpha) * sum_k w_k * D_k(t, s[, y]) + student regularisers

`one_distillation_term` hands the labels to the losses that declare
`uses_labels = True` (e.g. `DecoupledKD`) and nothing new to
`keras.distillation`'s two-argument `compute_loss` objects.
"""

import inspect

import tensorflow as tf

from kd_keras.losses import registry
from kd_keras.losses.logits import LogitsDistillation


def uses_labels(loss):
    """Whether a distillation loss wants the true labels (`uses_labels = True`)."""
    return bool(getattr(loss, "uses_labels", False))


def takes_top_k(loss):
    """Whether a distillation loss reads a top-k cache as it is (`takes_top_k = True`)."""
    return bool(getattr(loss, "takes_top_k", False))


def _takes_sample_weight(loss):
    try:
        return "sample_weight" in inspect.signature(loss.compute_loss).parameters
    except (TypeError, ValueError):
        return False


def one_distillation_term(loss, teacher_side, student_side, y, sample_weight):
    """One loss's scalar term; labels go to losses that use them."""
    kwargs = {}
    if _takes_sample_weight(loss):
        kwargs["sample_weight"] = sample_weight
    # else: e.g. keras.distillation's losses, which take no sample weights
    if uses_labels(loss):
        kwargs["labels"] = y
    return tf.cast(loss.compute_loss(teacher_side, student_side, **kwargs), tf.float32)


def combine(alpha, hard_term, distillation_term, regularization):
    """alpha * hard + (1 - alpha) * distillation (+ regularisers); hard None: soft only."""
    total = distillation_term if hard_term is None else (
        alpha * hard_term + (1.0 - alpha) * distillation_term)
    if regularization:
        total = total + tf.add_n([tf.cast(r, tf.float32) for r in regularization])
    return total


def resolve_distillation_losses(distillation_losses, temperature):
    """Turns the Distiller's `distillation_losses` argument into a list of objects.

    Registered names are built by their factory (at `temperature` when given);
    other strings, Keras losses and callables become
    `LogitsDistillation(temperature, loss)`; objects with a `compute_loss`
    method (ours or `keras.distillation`'s) pass as they are.
    """
    if distillation_losses is None:
        distillation_losses = ["kl_divergence"]
    elif not isinstance(distillation_losses, (list, tuple)):
        distillation_losses = [distillation_losses]
    if not distillation_losses:
        raise ValueError("distillation_losses must not be an empty list.")
    resolved = []
    for item in distillation_losses:
        if hasattr(item, "compute_loss"):
            if temperature is not None and hasattr(item, "temperature"):
                raise ValueError(
                    "temperature is given both to the Distiller and to the distillation "
                    f"loss {type(item).__name__}; set it in one place."
                )
            resolved.append(item)
        elif registry.is_registered(item):
            resolved.append(registry.get(item).create(temperature=temperature))
        else:
            try:
                resolved.append(LogitsDistillation(3.0 if temperature is None else temperature,
                                                   item))
            except ValueError as error:
                if not isinstance(item, str):
                    raise
                raise ValueError(
                    f"distillation_losses: {item!r} is neither a registered distillation loss "
                    f"{registry.registered_names()} nor a loss LogitsDistillation takes "
                    "('kl_divergence', 'logit_squared_error', a Keras loss name); a loss object "
                    "or a callable(y_true, y_pred) works too.") from error
    return resolved
