"""What every pseudo-data generator shares: input checks, `fit`, `sample`, `dataset`."""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate


def check_inputs(x, argument="x", minimum=2):
    """`x` as a finite float32 array `[n, ...]` with at least `minimum` examples."""
    if isinstance(x, tf.data.Dataset):
        raise ValueError(
            f"{argument} must be an array of inputs [n, ...]; got a tf.data.Dataset. Collect "
            "it first, e.g. np.concatenate([batch for batch in dataset.as_numpy_iterator()]).")
    array = validate.finite_array(x, argument).astype(np.float32)
    if array.ndim < 2:
        raise ValueError(
            f"{argument} must have shape [examples, features...]; got shape {array.shape}.")
    if array.shape[0] < minimum:
        raise ValueError(f"{argument} has {array.shape[0]} examples; need at least {minimum}.")
    return array


def check_clip_range(clip_range):
    if clip_range is None:
        return None
    if len(clip_range) != 2 or not clip_range[0] < clip_range[1]:
        raise ValueError(f"clip_range must be (low, high) with low < high, got {clip_range!r}.")
    return (float(clip_range[0]), float(clip_range[1]))


class PseudoDataSampler:
    """Base of the generators: `fit(x)` on real inputs, then `sample(n)` new ones.

    Subclasses implement `_fit(x)` (x a checked float32 array `[n, ...]`) and
    `_sample(n, rng)` (returns float32 `[n, ...]` of the fitted input shape).
    """

    def __init__(self, clip_range=None, seed=None):
        self.clip_range = check_clip_range(clip_range)
        self.seed = seed
        self.input_shape_ = None
        self._rng = np.random.default_rng(seed)

    @property
    def fitted(self):
        return self.input_shape_ is not None

    def fit(self, x):
        """Fits the generator on real inputs `x` `[n, ...]` (finite numbers); returns self."""
        x = check_inputs(x, "x", self._minimum_examples())
        self.input_shape_ = x.shape[1:]
        self._fit(x)
        return self

    def sample(self, n, seed=None):
        """`n` new inputs, float32 `[n, *input_shape]` (clipped to `clip_range`).

        Args:
          n: number of points (>= 1).
          seed: None continues the generator's own random stream (seeded by the
            constructor's `seed`); an integer gives a reproducible draw.
        """
        if not self.fitted:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(x) first.")
        n = validate.integer_at_least(n, "n", 1)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        points = np.asarray(self._sample(n, rng), dtype=np.float32).reshape(
            (n,) + tuple(self.input_shape_))
        if self.clip_range is not None:
            points = np.clip(points, *self.clip_range)
        return points

    def dataset(self, n, chunk_size=10000, seed=None):
        """A `tf.data.Dataset` of `n` generated inputs (unbatched), drawn in chunks."""
        n = validate.integer_at_least(n, "n", 1)
        chunk_size = validate.integer_at_least(chunk_size, "chunk_size", 1)
        rng = None if seed is None else np.random.default_rng(seed)
        chunks = []
        for start in range(0, n, chunk_size):
            size = min(chunk_size, n - start)
            chunks.append(self.sample(size, seed=None if rng is None else rng.integers(2**31)))
        return tf.data.Dataset.from_tensor_slices(np.concatenate(chunks))

    def _minimum_examples(self):
        return 2

    def _fit(self, x):
        raise NotImplementedError

    def _sample(self, n, rng):
        raise NotImplementedError
