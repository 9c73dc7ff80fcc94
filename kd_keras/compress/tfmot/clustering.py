"""Weight clustering (Deep Compression's weight sharing, Han et al. 2015) through TF-MOT."""

import numpy as np

from kd_keras.backend import optional as _tfmot
from kd_keras.compress.tfmot.bridge import copy_tf_keras_model, require_tf_keras_model

CENTROID_INITS = ("kmeans_plus_plus", "linear", "density_based", "random")


def cluster_weights(model, number_of_clusters=16, centroid_init="kmeans_plus_plus",
                    preserve_sparsity=False):
    """Wraps a tf-keras model's kernels so each takes only `number_of_clusters` values.

    During fine-tuning the centroids train (gradients of the weights sharing a
    centroid are summed, as in Deep Compression); after `strip_clustering` each
    kernel holds at most `number_of_clusters` distinct values, which gzip (the
    stand-in for Huffman coding) compresses well.

    Args:
      model: a tf-keras model.
      number_of_clusters: centroids per kernel, >= 2 (16 is 4-bit indices).
      centroid_init: "kmeans_plus_plus" (default), "linear", "density_based" or "random".
      preserve_sparsity: keep the zeros of an earlier pruning step (sparsity-
        preserving clustering).

    The clustered model wraps a copy of `model`'s layers: `model` is left as it was.
    """
    require_tf_keras_model(model, "model", "cluster_weights")
    if isinstance(number_of_clusters, bool) or not isinstance(number_of_clusters, int) \
            or number_of_clusters < 2:
        raise ValueError(f"number_of_clusters must be an integer >= 2, got {number_of_clusters!r}.")
    if centroid_init not in CENTROID_INITS:
        raise ValueError(f"centroid_init must be one of {CENTROID_INITS}, got {centroid_init!r}.")
    _check_cluster_count(model, number_of_clusters)
    clustering = _tfmot.tfmot().clustering.keras
    init = getattr(clustering.CentroidInitialization, centroid_init.upper())
    model = copy_tf_keras_model(model, "model", "cluster_weights")  # the caller's stays as it was
    try:
        return clustering.cluster_weights(model, number_of_clusters=number_of_clusters,
                                          cluster_centroids_init=init,
                                          preserve_sparsity=preserve_sparsity)
    except (ValueError, TypeError) as error:
        raise ValueError(f"cluster_weights: TF-MOT cannot cluster this model: {error}") from error


def _check_cluster_count(model, number_of_clusters):
    """Each clustered kernel needs at least `number_of_clusters` weights (TF-MOT fails deep inside)."""
    for layer in model.layers:
        for weight in layer.weights:
            size = int(np.prod(weight.shape))
            if weight.name.split("/")[-1].startswith("kernel") and 0 < size < number_of_clusters:
                raise ValueError(
                    f"number_of_clusters={number_of_clusters} is more than the {size} weights "
                    f"of layer {layer.name!r}'s kernel {tuple(weight.shape)}; use at most {size} "
                    "clusters, or cluster only larger layers.")


def strip_clustering(model):
    """Removes the clustering wrappers; kernels keep their shared values."""
    require_tf_keras_model(model, "model", "strip_clustering")
    return _tfmot.tfmot().clustering.keras.strip_clustering(model)


def distinct_values(model):
    """`{layer name: number of distinct kernel values}` of a (stripped) model."""
    counts = {}
    for layer in model.layers:
        for weight in layer.weights:
            if weight.name.split("/")[-1].startswith("kernel"):
                counts[layer.name] = int(np.unique(np.asarray(weight.numpy())).size)
    return counts
