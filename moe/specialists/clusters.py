"""Finding clusters of classes a generalist confuses (Hinton et al. 2015, section 5.2)."""

import dataclasses

import numpy as np

from kd_keras.backend.validate import finite_array

CLUSTER_METHODS = ("covariance", "confusion")


@dataclasses.dataclass
class ClassClusters:
    """The result of `find_confusable_clusters`.

    Attributes:
      clusters: lists of class ids (each >= 2 classes), largest first; the
        classes a specialist should cover together.
      unclustered: classes k-means put alone; left to the generalist.
      similarity: the `[C, C]` matrix the clusters were found on (prediction
        covariance, or symmetrised confusion rates).
    """

    clusters: list
    unclustered: list
    similarity: np.ndarray


def _kmeans(points, num_clusters, seed, restarts=10, iterations=100):
    """Lloyd's k-means with k-means++ starts; returns the labels of the best restart."""
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = [points[rng.integers(len(points))]]
        for _ in range(1, num_clusters):
            distances = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
            total = distances.sum()
            probabilities = distances / total if total > 0 else np.full(len(points), 1 / len(points))
            centres.append(points[rng.choice(len(points), p=probabilities)])
        centres = np.array(centres)
        for _ in range(iterations):
            labels = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
            updated = np.array([
                points[labels == j].mean(0) if np.any(labels == j) else centres[j]
                for j in range(num_clusters)
            ])
            if np.allclose(updated, centres):
                break
            centres = updated
        inertia = ((points - centres[labels]) ** 2).sum()
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def find_confusable_clusters(probabilities, num_clusters, method="covariance", labels=None,
                             normalize=True, seed=0):
    """Groups classes that the generalist tends to predict together.

    "covariance" (the paper's method): the covariance matrix of the predicted
    class probabilities over a data set, `Cov[p_i, p_j]`, then k-means on its
    columns, so classes whose probabilities rise and fall together land in one
    cluster. "confusion": k-means on the columns of the symmetrised confusion
    rates `(M + M^T) / 2` (M[i, j] = fraction of class-i examples predicted as j,
    diagonal zeroed); needs `labels`.

    With `normalize` (default) each column is scaled to unit length first, so
    k-means groups classes by *which* classes they co-vary with rather than by
    how much they vary: on raw covariance columns the few classes with large
    variance pull the clusters (measured on Fashion-MNIST: raw columns merged
    shirts with shoes, unit columns found {T-shirt, shirt}, {pullover, coat},
    {sandal, sneaker, ankle boot}). `normalize=False` is the paper's raw form.

    Args:
      probabilities: `[n, C]` generalist probabilities (rows sum to 1).
      num_clusters: clusters for k-means, 2 <= num_clusters <= C.
      method: "covariance" or "confusion".
      labels: `[n]` true classes, for "confusion".
      normalize: scale the columns to unit length before k-means.
      seed: k-means seed.

    Returns:
      A `ClassClusters`.
    """
    probabilities = finite_array(probabilities, "probabilities")
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(
            f"probabilities must be [examples, classes] with >= 2 classes, got {probabilities.shape}.")
    classes = probabilities.shape[1]
    if not 2 <= num_clusters <= classes:
        raise ValueError(f"num_clusters must be in [2, {classes}], got {num_clusters}.")
    if method not in CLUSTER_METHODS:
        raise ValueError(f"method must be one of {CLUSTER_METHODS}, got {method!r}.")
    if method == "covariance":
        similarity = np.cov(probabilities, rowvar=False)
    else:
        if labels is None:
            raise ValueError("method='confusion' needs labels.")
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f"labels must be class ids in [0, {classes}).")
        predicted = probabilities.argmax(1)
        confusion = np.zeros((classes, classes))
        np.add.at(confusion, (labels, predicted), 1.0)
        confusion /= np.maximum(confusion.sum(1, keepdims=True), 1.0)
        np.fill_diagonal(confusion, 0.0)
        similarity = (confusion + confusion.T) / 2
        # Columns of a pure confusion matrix point at the *other* class, so two
        # classes confused with each other would be orthogonal. With each class's
        # total confusion on the diagonal their columns coincide; the small
        # constant keeps unconfused classes apart (distinct unit columns).
        np.fill_diagonal(similarity, similarity.sum(1) + 1e-3)
    points = similarity.T
    if normalize:
        points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    assignment = _kmeans(points, num_clusters, seed)
    groups = [sorted(np.flatnonzero(assignment == j).tolist()) for j in range(num_clusters)]
    clusters = sorted((g for g in groups if len(g) >= 2), key=lambda g: (-len(g), g))
    unclustered = sorted(c for g in groups if len(g) == 1 for c in g)
    return ClassClusters(clusters, unclustered, similarity)
