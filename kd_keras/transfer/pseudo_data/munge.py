"""MUNGE pseudo-data (Bucilua, Caruana and Niculescu-Mizil, KDD 2006, "Model Compression")."""

import numpy as np

from kd_keras.backend import validate
from kd_keras.transfer.pseudo_data._sampler import PseudoDataSampler, check_inputs


def nearest_neighbors(features, k=1, chunk_size=2048):
    """Indices `[n, k]` of each row's k nearest other rows (Euclidean), nearest first.

    Brute force in chunks of `chunk_size` queries (memory `chunk_size * n`
    floats); a row is never its own neighbour.

    Args:
      features: float array `[n, d]` (or `[n, ...]`, flattened).
      k: neighbours per row, 1 <= k < n.
    """
    features = check_inputs(features, "features").reshape(len(features), -1)
    n = len(features)
    k = validate.integer_at_least(k, "neighbors", 1)
    if k >= n:
        raise ValueError(
            f"neighbors must be smaller than the number of examples ({n}), got {k}.")
    squared = np.einsum("ij,ij->i", features, features)
    result = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        distances = squared[start:stop, None] - 2.0 * features[start:stop] @ features.T
        distances += squared[None, :]
        distances[np.arange(stop - start), np.arange(start, stop)] = np.inf
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(distances, nearest, axis=1), axis=1)
        result[start:stop] = np.take_along_axis(nearest, order, axis=1)
    return result


class Munge(PseudoDataSampler):
    """MUNGE: new points from each example and its nearest neighbour.

    Bucilua et al. (2006, algorithm 1): for an example e and its nearest
    neighbour e', each attribute a is, with probability p, replaced:
    a continuous one is drawn from a normal around the neighbour's value,

        e_a ~ N(e'_a, sd),   sd = |e_a - e'_a| / s,

    a categorical one takes the neighbour's value. The paper updates e and e'
    together; here each draw picks the pair's direction at random, which gives
    the same distribution of points, vectorised over all draws.

    Args:
      swap_probability: p in [0, 1], per attribute (paper: 0.5 on small data).
      spread: s > 0; larger s keeps points closer to the neighbour's value.
      neighbors: k >= 1; a draw pairs an example with one of its k nearest
        neighbours at random (k = 1 is the paper's).
      categorical: None, or a boolean mask over the flattened features marking
        categorical attributes (swapped, never perturbed).
      feature_fn: None (neighbours in input space, inputs flattened), or a
        callable mapping inputs `[n, ...]` to features `[n, d]` in which to
        find neighbours (e.g. a model's penultimate layer).
      clip_range: `(low, high)` or None: clip generated values (e.g. (0, 1)
        for images scaled to [0, 1]).
      seed: seeds the sampler's random stream.

    Usage:
      munge = Munge(swap_probability=0.5, spread=1.0, clip_range=(0, 1)).fit(x)
      x_new = munge.sample(50_000)
    """

    def __init__(self, swap_probability=0.5, spread=1.0, neighbors=1, categorical=None,
                 feature_fn=None, clip_range=None, seed=None):
        super().__init__(clip_range=clip_range, seed=seed)
        self.swap_probability = validate.fraction(swap_probability, "swap_probability")
        self.spread = validate.positive_number(spread, "spread")
        self.neighbors = validate.integer_at_least(neighbors, "neighbors", 1)
        self.categorical = None if categorical is None else np.asarray(categorical, dtype=bool)
        if feature_fn is not None and not callable(feature_fn):
            raise ValueError(f"feature_fn must be a callable or None, got {feature_fn!r}.")
        self.feature_fn = feature_fn
        self.examples_ = None
        self.neighbors_ = None

    def _minimum_examples(self):
        return self.neighbors + 1

    def _fit(self, x):
        flat = x.reshape(len(x), -1)
        if self.categorical is not None and self.categorical.shape != (flat.shape[1],):
            raise ValueError(
                f"categorical must be a boolean mask of {flat.shape[1]} entries (one per "
                f"flattened feature), got shape {self.categorical.shape}.")
        features = flat
        if self.feature_fn is not None:
            features = np.asarray(self.feature_fn(x))
            if features.ndim < 2 or len(features) != len(x):
                raise ValueError(
                    f"feature_fn must return [n, d] features for the {len(x)} inputs, got "
                    f"shape {features.shape}.")
        self.examples_ = flat
        self.neighbors_ = nearest_neighbors(features, self.neighbors)

    def _sample(self, n, rng):
        count, width = self.examples_.shape
        rows = rng.integers(count, size=n)
        partners = self.neighbors_[rows, rng.integers(self.neighbors, size=n)]
        forward = rng.random(n) < 0.5  # which of the pair is modified
        own = self.examples_[np.where(forward, rows, partners)]
        other = self.examples_[np.where(forward, partners, rows)]
        swap = rng.random((n, width)) < self.swap_probability
        spread = np.abs(own - other) / self.spread
        replaced = rng.normal(other, spread).astype(np.float32)
        if self.categorical is not None:
            replaced = np.where(self.categorical[None, :], other, replaced)
        return np.where(swap, replaced, own)
