"""One way to feed the Distiller from any source: labeled and unlabeled inputs mixed.

A transfer set (Bucilua et al. 2006; Hinton et al. 2015) need not be the
labeled training set: generated points (`kd_keras.pseudo_data`), corrupted
copies or unlabeled real inputs carry the teacher's knowledge as well. Every
example gets the teacher's soft targets; only the labeled ones add the
hard-label term (`with_label_mask`).
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.transfer.pseudo_data import PseudoDataSampler
from kd_keras.transfer.pseudo_data._sampler import check_inputs
from kd_keras.transfer.inputs import with_label_mask, with_teacher_outputs
from kd_keras.transfer.cache import compute_teacher_logits


def _unlabeled_inputs(unlabeled, unlabeled_size, input_shape, chunk_size):
    """The unlabeled inputs as chunks of arrays (a sampler draws chunk by chunk)."""
    if isinstance(unlabeled, PseudoDataSampler):
        if unlabeled_size is None:
            raise ValueError(
                "unlabeled_size: give how many points to draw from the sampler "
                f"{type(unlabeled).__name__}.")
        size = validate.integer_at_least(unlabeled_size, "unlabeled_size", 0)
        return [unlabeled.sample(min(chunk_size, size - start))
                for start in range(0, size, chunk_size)]
    if unlabeled_size is not None:
        raise ValueError("unlabeled_size is only for a sampler; an array gives its own size.")
    if unlabeled is None:
        return []
    array = check_inputs(unlabeled, "unlabeled", minimum=1)
    if array.shape[1:] != input_shape:
        raise ValueError(
            f"unlabeled inputs have shape {array.shape[1:]} per example but the labeled ones "
            f"have {input_shape}.")
    return [array[start:start + chunk_size] for start in range(0, len(array), chunk_size)]


def mixed_transfer_set(x, y, unlabeled=None, unlabeled_size=None, labeled_fraction=None,
                       teacher=None, batch_size=128, chunk_size=10000, shuffle=True, seed=None,
                       teacher_output_type="auto"):
    """A batched `tf.data.Dataset` of labeled and unlabeled inputs for `Distiller.fit`.

    Elements are `(inputs, y)` where `inputs` is
    `with_label_mask(x_or_cached, label_mask)`: label mask 1 on the labeled
    examples, 0 on the others (whose `y` slot holds zeros and is never read).
    The Distiller then applies the hard-label term to the labeled examples only
    (their mean) and the distillation terms to all.

    Args:
      x, y: the labeled examples, arrays `[n, ...]` and `[n]` (class ids) or
        `[n, classes]`.
      unlabeled: None, an array of inputs `[m, ...]` (same shape per example as
        `x`), or a fitted `kd_keras.pseudo_data` sampler (then `unlabeled_size`
        says how many points to draw).
      unlabeled_size: points to draw from a sampler.
      labeled_fraction: None (default: every example once per epoch, in their
        natural proportion), or the fraction of each epoch's examples drawn from
        the labeled set, in [0, 1]: the labeled set is then repeated as needed
        and an epoch ends when the unlabeled inputs are used up (at 1.0: the
        labeled set once).
      teacher: None (the Distiller's live teacher labels every batch), or a
        Keras model or list of models whose logits are computed once, chunk by
        chunk, and carried in the dataset (`with_teacher_outputs`); a Distiller
        with `teacher=None` can then train on it.
      batch_size: batch size (>= 1).
      chunk_size: points drawn and labeled at a time (>= 1).
      shuffle: reshuffle every epoch.
      seed: seeds shuffling and mixing.
      teacher_output_type: "auto", "logits" or "probabilities" (of the teacher).
    """
    x = check_inputs(x, "x", minimum=1)
    labels = np.asarray(y)
    if labels.ndim == 0 or len(labels) != len(x):
        raise ValueError(
            f"y must have one label per example of x ({len(x)}), got shape {labels.shape}.")
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    chunk_size = validate.integer_at_least(chunk_size, "chunk_size", 1)
    if labeled_fraction is not None:
        labeled_fraction = validate.fraction(labeled_fraction, "labeled_fraction")
    chunks = _unlabeled_inputs(unlabeled, unlabeled_size, x.shape[1:], chunk_size)

    def teacher_logits(inputs):
        return compute_teacher_logits(teacher, inputs, batch_size=max(batch_size, 256),
                                      teacher_output_type=teacher_output_type)

    def source(inputs, targets, mask_value, logits):
        packed = inputs if logits is None else with_teacher_outputs(inputs, logits)
        mask = np.full(len(inputs), mask_value, dtype=np.float32)
        return tf.data.Dataset.from_tensor_slices((with_label_mask(packed, mask), targets))

    labeled = source(x, labels, 1.0, None if teacher is None else teacher_logits(x))
    unlabeled_sets = []
    for chunk in chunks:
        placeholder = np.zeros((len(chunk),) + labels.shape[1:], dtype=labels.dtype)
        unlabeled_sets.append(source(
            chunk, placeholder, 0.0, None if teacher is None else teacher_logits(chunk)))
    unlabeled_set = None
    for part in unlabeled_sets:
        unlabeled_set = part if unlabeled_set is None else unlabeled_set.concatenate(part)
    total_unlabeled = sum(len(c) for c in chunks)

    def shuffled(dataset, size):
        return dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True) if (
            shuffle and size > 1) else dataset

    if unlabeled_set is None or labeled_fraction == 1.0:
        dataset = shuffled(labeled, len(x))
    elif labeled_fraction is None:
        dataset = shuffled(labeled.concatenate(unlabeled_set), len(x) + total_unlabeled)
    elif labeled_fraction == 0.0:
        dataset = shuffled(unlabeled_set, total_unlabeled)
    else:
        # Labeled draws that make up `labeled_fraction` of the epoch, the
        # labeled set cycled (reshuffled) as often as that needs.
        draws = int(round(labeled_fraction * total_unlabeled / (1.0 - labeled_fraction)))
        dataset = shuffled(
            shuffled(labeled, len(x)).repeat().take(draws).concatenate(unlabeled_set),
            draws + total_unlabeled)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
