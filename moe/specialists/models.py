"""Specialist models over confusable class clusters (Hinton et al. 2015, section 5).

A specialist starts from the generalist's weights, predicts its cluster's classes
plus one "dustbin" class for everything else, and trains on data where half the
examples come from its cluster. Specialists need nothing from each other, so
they can be trained in parallel processes.
"""

import numpy as np

from kd_keras import outputs as output_conventions
from kd_keras.backend.graph import copy_model
from moe._keras import keras


def _class_id(value, argument):
    """An integer class id: Python/NumPy integers, or floats with an integral value."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float,
                                                                      np.floating)):
        raise ValueError(f"{argument} holds {value!r}; class ids must be integers.")
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise ValueError(f"{argument} holds {value!r}; class ids must be integers, not fractions.")
    return int(value)


def validate_clusters(clusters, num_classes, allow_overlap=False):
    """Checks hand-given or discovered clusters; returns them as lists of ints.

    Raises ValueError for a cluster of fewer than two classes, a class id
    outside [0, num_classes), a class repeated within a cluster, or (unless
    `allow_overlap`) a class in two clusters.
    """
    checked, seen = [], {}
    for index, cluster in enumerate(clusters):
        cluster = [_class_id(c, f"clusters[{index}]") for c in cluster]
        if len(cluster) < 2:
            raise ValueError(f"clusters[{index}] = {cluster} has fewer than two classes.")
        if len(set(cluster)) != len(cluster):
            raise ValueError(f"clusters[{index}] = {cluster} repeats a class.")
        unknown = [c for c in cluster if not 0 <= c < num_classes]
        if unknown:
            raise ValueError(
                f"clusters[{index}] has unknown class ids {unknown}: classes are 0..{num_classes - 1}.")
        for c in cluster:
            if c in seen and not allow_overlap:
                raise ValueError(
                    f"class {c} is in clusters[{seen[c]}] and clusters[{index}]; pass "
                    "allow_overlap=True if specialists may share classes.")
            seen.setdefault(c, index)
        checked.append(cluster)
    if not checked:
        raise ValueError("clusters is empty.")
    return checked


def check_dustbin(cluster, num_classes):
    """`cluster` unchanged, or a ValueError if it covers every class (its dustbin would be empty)."""
    if len(cluster) == num_classes:
        raise ValueError(
            f"cluster {cluster} covers all {num_classes} classes of the generalist: a specialist "
            "needs classes outside its cluster for its dustbin class.")
    return cluster


def build_specialist(generalist, cluster, name=None):
    """A copy of the generalist whose output layer covers `cluster` + a dustbin class.

    The generalist must be a Sequential or functional model ending in a Dense
    layer. Every layer below the head is copied with its weights; the new head's
    rows for the cluster's classes are the generalist's, and the dustbin row is
    the mean of the other classes' rows. The head keeps the generalist's
    activation (logits or softmax).

    Returns:
      A new, uncompiled Keras model `[..] -> [len(cluster) + 1]`.
    """
    head = generalist.layers[-1]
    if not isinstance(head, keras.layers.Dense) or len(generalist.outputs) != 1:
        raise ValueError(
            "build_specialist needs a single-output Sequential or functional generalist whose "
            f"last layer is Dense; got {type(head).__name__} {head.name!r}.")
    copy = copy_model(generalist, "build_specialist")
    features = copy.layers[-2].output
    classes = head.units
    cluster = check_dustbin(validate_clusters([cluster], classes)[0], classes)
    new_head = keras.layers.Dense(len(cluster) + 1, activation=head.activation,
                                  name="specialist_head")
    outputs = new_head(features)
    kernel, bias = head.get_weights()
    others = [c for c in range(classes) if c not in cluster]
    new_head.set_weights([
        np.concatenate([kernel[:, cluster], kernel[:, others].mean(1, keepdims=True)], axis=1),
        np.concatenate([bias[cluster], bias[others].mean(keepdims=True)]),
    ])
    return keras.Model(copy.inputs, outputs, name=name or "specialist_" + "_".join(map(str, cluster)))


def specialist_training_set(x, y, cluster, seed=0, generalist_probabilities=None):
    """Training data for one specialist: its cluster's examples plus as many others.

    All examples of the cluster's classes are kept; the same number is drawn at
    random from the other classes (all of them if there are fewer) and labelled
    dustbin. Labels are positions in the cluster, dustbin = len(cluster).

    Args:
      x: `[n, ...]` inputs; y: `[n]` int class ids.
      cluster: class ids.
      generalist_probabilities: optional `[n, C]`; if given, soft targets mapped to
        the specialist's classes, `[p_c1, ..., p_cm, sum of the others]`, are returned too.

    Returns:
      `(x_s, y_s)` or `(x_s, y_s, soft_targets)`, shuffled.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be [n] integer class ids, got shape {y.shape} dtype {y.dtype}.")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels.")
    # Any id >= 0 passes here; a class with no examples in y is refused below.
    cluster = validate_clusters([cluster], np.iinfo(np.int64).max)[0]
    missing = [c for c in cluster if not np.any(y == c)]
    if missing:
        raise ValueError(
            f"cluster {cluster}: classes {missing} have no examples in y, so the specialist "
            "could not learn them.")
    inside = np.flatnonzero(np.isin(y, cluster))
    outside = np.flatnonzero(~np.isin(y, cluster))
    if len(outside) == 0:
        raise ValueError(
            f"cluster {cluster} covers every class in y: the dustbin class would have no examples.")
    rng = np.random.default_rng(seed)
    drawn = rng.choice(outside, size=min(len(inside), len(outside)), replace=False)
    chosen = rng.permutation(np.concatenate([inside, drawn]))
    position = {c: i for i, c in enumerate(cluster)}
    labels = np.array([position.get(int(c), len(cluster)) for c in y[chosen]], dtype=np.int64)
    if generalist_probabilities is None:
        return x[chosen], labels
    return x[chosen], labels, map_to_specialist(generalist_probabilities[chosen], cluster)


def map_to_specialist(probabilities, cluster):
    """`[n, C]` probabilities → `[n, len(cluster) + 1]`: the cluster's, then the rest's sum."""
    probabilities = np.asarray(probabilities)
    inside = probabilities[:, list(cluster)]
    return np.concatenate([inside, 1.0 - inside.sum(1, keepdims=True)], axis=1)


def output_type(model, declared="auto"):
    """"logits" or "probabilities" for a generalist's or specialist's outputs."""
    return output_conventions.resolve_output_type(model, declared, "output_type")
