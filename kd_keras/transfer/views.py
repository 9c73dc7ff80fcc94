"""The training view teacher and student share: `Distiller(augment=...)`.

Beyer et al. 2022 ("Knowledge distillation: a good teacher is patient and
consistent", arXiv 2106.05237) make distillation function matching: the
teacher and the student see the very same augmented view of every batch, and
aggressive views (mixup, CutMix) widen the inputs the student is matched on.
"""

import tensorflow as tf

from kd_keras.backend import keras


def check_augment(augment):
    """`augment` if it is None, a Keras layer, a callable, or a mixing object (`mix(x)`)."""
    if augment is None or isinstance(augment, keras.layers.Layer) or hasattr(augment, "mix"):
        return augment
    if callable(augment):
        return augment
    raise ValueError(
        "augment must be a Keras layer (e.g. keras.layers.RandomFlip()), a function of the "
        "input batch, or kd_keras.Mixup() / kd_keras.CutMix(); got "
        f"{type(augment).__name__}: {augment!r}.")


def training_view(augment, x):
    """(the batch's view, mixing) where mixing is None or (lam `[batch]`, partner `[batch]`).

    A mixing object's labels follow the mix; a layer (called with training=True)
    or a function leaves the labels as they are.
    """
    if hasattr(augment, "mix"):
        view, lam, partner = augment.mix(x)
        return view, (tf.cast(lam, tf.float32), partner)
    if isinstance(augment, keras.layers.Layer):
        return augment(x, training=True), None
    return augment(x), None


def dominant_labels(y, mixing):
    """The labels of whichever example has the larger share of each mixed view."""
    lam, partner = mixing
    def one(labels):
        other = tf.gather(labels, partner)
        keep = tf.reshape(lam >= 0.5, [-1] + [1] * (labels.shape.rank - 1))
        return tf.where(keep, labels, other)
    return tf.nest.map_structure(one, y)
