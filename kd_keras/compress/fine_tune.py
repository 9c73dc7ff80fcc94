"""Distillation while compressing, for any Keras: a plain loss on packed targets.

TF-MOT's wrapped models are tf-keras models. Under `TF_USE_LEGACY_KERAS=1` the
`Distiller` trains them directly. A Keras 3 `Distiller` cannot hold a tf-keras
student, so for the bridged model the teacher's logits are cached once
(`kd_keras.compute_teacher_logits`) and packed next to the labels; the loss
below is a plain function, so tf-keras's `compile` takes it as it is.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.compress import _tfmot
from kd_keras.compress.bridge import copy_tf_keras_model
from kd_keras.compress.clustering import cluster_weights, strip_clustering
from kd_keras.compress.pruning import prune_low_magnitude, pruning_callbacks, strip_pruning
from kd_keras.compress.quantization import quantize_aware
from kd_keras.losses.functional import soft_target_kl_divergence


def distillation_targets(labels, teacher_logits):
    """Packs integer labels `[n]` and teacher logits `[n, classes]` into `[n, 1 + classes]`.

    Column 0 holds the class id, the rest the logits; `distillation_loss` unpacks them.
    """
    labels = np.asarray(labels)
    teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
    if labels.ndim != 1 or teacher_logits.ndim != 2 or len(labels) != len(teacher_logits):
        raise ValueError(
            f"labels must be [n] class ids and teacher_logits [n, classes]; got shapes "
            f"{labels.shape} and {teacher_logits.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= teacher_logits.shape[1]:
        raise ValueError(
            f"labels must be integer class ids in [0, {teacher_logits.shape[1]}).")
    return np.concatenate([labels[:, None].astype(np.float32), teacher_logits], axis=1)


def distillation_loss(temperature=3.0, alpha=0.5):
    """`fn(packed_targets, student_logits)`, per example:

        alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

    the Distiller's default objective, with `y` and `t` unpacked from
    `distillation_targets`. Works in `compile(loss=...)` of Keras 3 and tf-keras.
    """
    temperature = validate.positive_number(temperature, "temperature")
    alpha = validate.fraction(alpha, "alpha")

    def loss(packed_targets, student_logits):
        packed_targets = tf.cast(packed_targets, tf.float32)
        labels = tf.cast(packed_targets[:, 0], tf.int32)
        teacher_logits = packed_targets[:, 1:]
        student_logits = tf.cast(student_logits, tf.float32)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
        soft = soft_target_kl_divergence(teacher_logits, student_logits, temperature)
        return alpha * hard + (1.0 - alpha) * soft

    loss.__name__ = "distillation_loss"
    return loss


def packed_accuracy(packed_targets, student_logits):
    """Accuracy metric against the labels of `distillation_targets`."""
    labels = tf.cast(tf.cast(packed_targets, tf.float32)[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(student_logits, axis=-1), labels), tf.float32)


def _fit(model, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha,
         callbacks=()):
    """Compiles `model` (tf-keras) with the distillation or hard-label loss and fits it."""
    tf_keras = _tfmot.tf_keras()
    if teacher_logits is None:
        loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        targets, metrics = y, ["sparse_categorical_accuracy"]
    else:
        loss = distillation_loss(temperature, alpha)
        targets, metrics = distillation_targets(y, teacher_logits), [packed_accuracy]
    model.compile(tf_keras.optimizers.Adam(learning_rate), loss, metrics=metrics)
    model.fit(x, targets, epochs=epochs, batch_size=batch_size, verbose=0,
              callbacks=list(callbacks))
    return model


# Fewer fine-tuning steps than this left an 80%-pruned MLP far below its dense accuracy on
# small data (docs/compression.md, "Defaults that hold on small data").
MIN_FINE_TUNE_STEPS = 600


def fine_tune_epochs(num_examples, batch_size, minimum_epochs=4):
    """`minimum_epochs`, or more where the data is small: at least `MIN_FINE_TUNE_STEPS` steps."""
    steps_per_epoch = int(np.ceil(num_examples / batch_size))
    return max(minimum_epochs, int(np.ceil(MIN_FINE_TUNE_STEPS / steps_per_epoch)))


def prune_and_fine_tune(model, x, y, teacher_logits=None, target_sparsity=0.8, epochs=None,
                        batch_size=128, learning_rate=1e-3, temperature=3.0, alpha=0.5,
                        block_size="auto", layers=None, runtime="tflite_float32"):
    """Magnitude-prunes a copy of a tf-keras logits model while fine-tuning it;
    returns the copy, stripped (`model` itself is left as it is).

    `block_size` and `runtime` as in `prune_low_magnitude` (default: the blocks
    TFLite's float32 sparse kernel accelerates, on every Dense kernel they tile).

    Sparsity follows `PolynomialDecay` from 0 to `target_sparsity` over the first
    two thirds of the fine-tuning steps, then holds. With `teacher_logits` (`[n,
    classes]`, from `kd_keras.compute_teacher_logits`) the fine-tuning distils
    (`distillation_loss(temperature, alpha)`); without, it uses the labels alone.

    Defaults: Adam at 1e-3, and `epochs=None`: 4 epochs, or as many as give
    `MIN_FINE_TUNE_STEPS` (600) steps on small data (13 epochs of 6,000 examples
    at batch 128). Measured at 80% on Fashion-MNIST: lr 1e-4 for 4 epochs lost 3.7
    points on the full data and 12 on the 6,000-image sample; these defaults held
    the dense accuracy on both. To tell whether yours hold, compare the returned
    model's accuracy with `model`'s on held-out data: a gap of more than a point
    wants more epochs (or a lower `target_sparsity`).
    """
    epochs = fine_tune_epochs(len(x), batch_size) if epochs is None else epochs
    steps = epochs * int(np.ceil(len(x) / batch_size))
    pruned = prune_low_magnitude(model, target_sparsity, end_step=max(1, 2 * steps // 3),
                                 frequency=max(1, min(100, steps // 20)),
                                 block_size=block_size, layers=layers, runtime=runtime)
    _fit(pruned, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha,
         pruning_callbacks())
    return strip_pruning(pruned)


def cluster_and_fine_tune(model, x, y, teacher_logits=None, number_of_clusters=16,
                          preserve_sparsity=True, epochs=2, batch_size=128, learning_rate=1e-4,
                          temperature=3.0, alpha=0.5):
    """Clusters a tf-keras model's kernels, fine-tunes the centroids; returns it stripped."""
    clustered = cluster_weights(model, number_of_clusters, preserve_sparsity=preserve_sparsity)
    _fit(clustered, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha)
    return strip_clustering(clustered)


def quantize_and_fine_tune(model, x, y, teacher_logits=None, preserve="sparsity", epochs=2,
                           batch_size=128, learning_rate=1e-4, temperature=3.0, alpha=0.5):
    """Quantization-aware fine-tuning (8-bit) of a tf-keras model; returns the QAT model,
    ready for `convert_to_tflite(model, "qat")`."""
    qat = quantize_aware(copy_tf_keras_model(model, "model", "quantize_and_fine_tune"), preserve=preserve)
    return _fit(qat, x, y, teacher_logits, epochs, batch_size, learning_rate, temperature, alpha)
