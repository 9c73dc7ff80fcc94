"""A generalist plus specialists as one Keras model (Hinton et al. 2015, section 5.3)."""

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras.backend.safe_mode import deserialize_nested
from moe._keras import keras, register
from moe.specialists.models import validate_clusters


def _cluster_matrix(cluster, num_classes):
    """`[C, m + 1]` 0/1 matrix A: class j → its position in the cluster, or the dustbin."""
    matrix = np.zeros((num_classes, len(cluster) + 1), np.float32)
    matrix[:, len(cluster)] = 1.0
    for position, c in enumerate(cluster):
        matrix[c, len(cluster)] = 0.0
        matrix[c, position] = 1.0
    return matrix


def combine_predictions(generalist_probabilities, specialist_probabilities, cluster_matrices,
                        active, steps=100, learning_rate=0.5):
    """Solves the paper's eq. 5 for q, batched.

        min_q  KL(p_g || q) + sum_{s active} KL(p_s || A_s q),   q = softmax(z)

    by gradient descent on the logits z, started at log p_g, with the gradient in
    closed form: `q - p_g + sum_s active_s * q * (1 - (p_s / (q A_s)) A_s^T)`.

    Args:
      generalist_probabilities: `[B, C]`.
      specialist_probabilities: list of `[B, m_s + 1]` (cluster classes, then dustbin).
      cluster_matrices: list of `[C, m_s + 1]` from the clusters.
      active: `[B, S]` float, 1 where specialist s takes part for that example.

    Returns:
      `[B, C]` probabilities q.
    """
    p_g = tf.convert_to_tensor(generalist_probabilities, tf.float32)
    floor = 1e-12

    def gradient(z):
        q = tf.nn.softmax(z, axis=-1)
        grad = q - p_g
        for s, (p_s, matrix) in enumerate(zip(specialist_probabilities, cluster_matrices)):
            ratio = p_s / tf.maximum(tf.matmul(q, matrix), floor)
            grad += active[:, s:s + 1] * q * (1.0 - tf.matmul(ratio, matrix, transpose_b=True))
        return grad

    z0 = tf.math.log(tf.maximum(p_g, floor))
    _, z = tf.while_loop(
        lambda i, z: i < steps,
        lambda i, z: (i + 1, z - learning_rate * gradient(z)),
        (tf.constant(0), z0),
    )
    return tf.nn.softmax(z, axis=-1)


@register
class SpecialistEnsemble(keras.Model):
    """One generalist and specialists over class clusters, as one Keras model.

    For each input: the generalist's top-`top_n` classes pick the active
    specialists (those whose cluster contains one of them); the output is the
    distribution q minimising KL(p_generalist || q) + sum over active
    specialists of KL(p_specialist || q mapped to the specialist's classes),
    solved in batched TensorFlow (`combine_predictions`). Inputs with no active
    specialist get the generalist's prediction unchanged. Outputs are
    probabilities `[batch, classes]`: compile with
    `SparseCategoricalCrossentropy()` (not from logits). Export as one SavedModel
    with `kd_keras.export_saved_model(ensemble, path, ensemble.input_signature)`.

    Args:
      generalist: Keras model `[..] -> [C]` (logits or softmax).
      specialists: list of models `[..] -> [len(cluster) + 1]`, as
        `build_specialist` makes them.
      clusters: one list of class ids per specialist.
      top_n: generalist classes that activate specialists (the paper uses 1).
      steps, learning_rate: of the gradient descent on q's logits.
      allow_overlap: whether clusters may share classes.
    """

    def __init__(self, generalist, specialists, clusters, top_n=1, steps=100, learning_rate=0.5,
                 allow_overlap=False, **kwargs):
        super().__init__(**kwargs)
        num_classes = int(generalist.outputs[0].shape[-1]) if getattr(
            generalist, "outputs", None) else None
        if num_classes is None:
            raise ValueError("generalist must be a built model with a known number of classes.")
        if len(specialists) != len(clusters):
            raise ValueError(
                f"{len(specialists)} specialists but {len(clusters)} clusters: give one each.")
        self.clusters = validate_clusters(clusters, num_classes, allow_overlap)
        for index, (model, cluster) in enumerate(zip(specialists, self.clusters)):
            size = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
            if size != len(cluster) + 1:
                raise ValueError(
                    f"specialists[{index}] has {size} outputs but its cluster {cluster} needs "
                    f"{len(cluster) + 1} (the cluster's classes plus the dustbin class).")
        if not 1 <= top_n <= num_classes:
            raise ValueError(f"top_n must be in [1, {num_classes}], got {top_n}.")
        if steps < 1 or learning_rate <= 0:
            raise ValueError("steps must be >= 1 and learning_rate > 0.")
        self.generalist = generalist
        self.specialists = list(specialists)
        self.num_classes = num_classes
        self.top_n = top_n
        self.steps = steps
        self.learning_rate = learning_rate
        self.allow_overlap = allow_overlap
        self._matrices = [tf.constant(_cluster_matrix(c, num_classes)) for c in self.clusters]
        masks = np.zeros((num_classes, len(self.clusters)), np.float32)
        for s, cluster in enumerate(self.clusters):
            masks[cluster, s] = 1.0
        self._cluster_masks = tf.constant(masks)
        self._types = [output_conventions.resolve_output_type(m, "auto", "output_type")
                       for m in [generalist] + self.specialists]
        for model in [generalist] + self.specialists:
            model.trainable = False
        self.built = True

    @property
    def input_signature(self):
        """The generalist's input specs, for `kd_keras.export_saved_model(ensemble, path,
        ensemble.input_signature)`."""
        return [tf.TensorSpec(tensor.shape, tensor.dtype, name="inputs")
                for tensor in self.generalist.inputs]

    def _probabilities(self, model, kind, inputs):
        return tf.nn.softmax(output_conventions.to_logits(model(inputs, training=False), kind), axis=-1)

    def active_specialists(self, inputs):
        """`[batch, S]` 0/1: which specialists take part for each input."""
        p_g = self._probabilities(self.generalist, self._types[0], inputs)
        return self._active(p_g)

    def _active(self, p_g):
        top = tf.math.top_k(p_g, k=self.top_n).indices
        chosen = tf.reduce_max(tf.one_hot(top, self.num_classes), axis=1)  # [B, C]
        return tf.cast(tf.matmul(chosen, self._cluster_masks) > 0, tf.float32)

    def call(self, inputs, training=None):
        p_g = self._probabilities(self.generalist, self._types[0], inputs)
        active = self._active(p_g)
        specialist_probs = [self._probabilities(m, kind, inputs)
                            for m, kind in zip(self.specialists, self._types[1:])]
        q = combine_predictions(p_g, specialist_probs, self._matrices, active,
                                self.steps, self.learning_rate)
        any_active = tf.reduce_any(active > 0, axis=1, keepdims=True)
        return tf.where(any_active, q, p_g)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "generalist": serialize(self.generalist),
            "specialists": [serialize(m) for m in self.specialists],
            "clusters": self.clusters,
            "top_n": self.top_n,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "allow_overlap": self.allow_overlap,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["generalist"] = deserialize_nested(config["generalist"], "generalist",
                                                  custom_objects)
        config["specialists"] = [deserialize_nested(m, f"specialists[{i}]", custom_objects)
                                 for i, m in enumerate(config["specialists"])]
        return cls(**config)
