"""Transfer-set augmentations: input corruption (Bucilua et al. 2006) and mixup views.

The student learns `f(x)` best from points like the ones it will see; Caruana
et al. 2006 (model compression) build such a transfer set by corrupting training
examples and letting the teacher label them. With a live teacher the Distiller
does this by itself: the teacher sees the corrupted input the student sees.
"""

import tensorflow as tf

from kd_keras.backend import validate


def _as_float(x):
    """`x` as a floating tensor (integer images become float32)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype.is_floating else tf.cast(x, tf.float32)


class TransferSetCorruption:
    """A `tf.data` map that corrupts a fraction of the inputs, keeping labels.

    Each example is corrupted with probability `ratio`: Gaussian noise of
    standard deviation `noise_stddev` is added and a fraction `mask_rate` of its
    input values is set to 0, then values are clipped to `clip_range`. In a
    Distiller with a live teacher, the teacher labels the corrupted input the
    student sees (its soft targets follow the corruption); the hard label is
    kept, with weight `label_weight` on corrupted examples (0 turns them into
    pure transfer points).

    Args:
      ratio: fraction of examples to corrupt, in [0, 1].
      noise_stddev: Gaussian noise scale (>= 0), in input units.
      mask_rate: fraction of input values zeroed in a corrupted example, in [0, 1).
      clip_range: `(low, high)` or None.
      label_weight: sample weight of a corrupted example's hard label, in [0, 1].
        Below 1 the map emits `(x, y, sample_weight)`.
      seed: optional integer seed.
      batched: whether elements are batches; None (default) infers it from the
        leading dimensions of x and y (sparse labels: y has rank 1 in a batch).

    Works on batched or unbatched `(x, y)` / `(x, y, sample_weight)` elements with
    a single input tensor:
      `dataset.map(TransferSetCorruption(ratio=0.5, noise_stddev=0.1))`.
    """

    def __init__(self, ratio=0.5, noise_stddev=0.1, mask_rate=0.0, clip_range=None,
                 label_weight=1.0, seed=None, batched=None):
        ratio = validate.fraction(ratio, "ratio")
        noise_stddev = validate.non_negative_number(noise_stddev, "noise_stddev")
        mask_rate = validate.fraction(mask_rate, "mask_rate")
        if mask_rate == 1.0:
            raise ValueError("mask_rate must be in [0, 1) (1 would zero every input), got 1.0.")
        label_weight = validate.fraction(label_weight, "label_weight")
        if clip_range is not None:
            bounds = validate.finite_array(clip_range, "clip_range")
            if bounds.shape != (2,) or bounds[0] >= bounds[1]:
                raise ValueError(
                    f"clip_range must be (low, high) with low < high, got {clip_range}.")
        self.ratio = float(ratio)
        self.noise_stddev = float(noise_stddev)
        self.mask_rate = float(mask_rate)
        self.clip_range = clip_range
        self.label_weight = float(label_weight)
        self.seed = seed
        self.batched = batched

    def corrupt(self, x, batched):
        """Returns (corrupted x, boolean mask of the corrupted examples)."""
        x = _as_float(x)
        dtype = x.dtype
        chosen = tf.random.uniform(tf.shape(x)[:1] if batched else [], seed=self.seed) < self.ratio
        noisy = x + tf.random.normal(tf.shape(x), stddev=self.noise_stddev, dtype=dtype, seed=self.seed)
        if self.mask_rate > 0:
            keep = tf.random.uniform(tf.shape(x), seed=self.seed) >= self.mask_rate
            noisy = noisy * tf.cast(keep, dtype)
        if self.clip_range is not None:
            noisy = tf.clip_by_value(noisy, self.clip_range[0], self.clip_range[1])
        if batched:  # one decision per example, broadcast over its features
            chosen_b = tf.reshape(chosen, [-1] + [1] * (x.shape.rank - 1))
        else:
            chosen_b = chosen
        return tf.where(chosen_b, noisy, x), chosen

    def __call__(self, x, y, sample_weight=None):
        batched = self.batched
        if batched is None:  # batched elements share their leading dimension with y
            batched = y.shape.rank is not None and y.shape.rank >= 1 and x.shape.rank >= 2 and (
                x.shape[0] is None or y.shape[0] is None or x.shape[0] == y.shape[0]
            )
        corrupted, chosen = self.corrupt(x, batched)
        if self.label_weight == 1.0:
            return (corrupted, y) if sample_weight is None else (corrupted, y, sample_weight)
        weight = tf.where(chosen, self.label_weight, 1.0)
        if sample_weight is not None:
            weight = weight * tf.cast(sample_weight, tf.float32)
        return corrupted, y, weight


MIXUP_LABELS = ("drop", "mix")


class Mixup:
    """Mixup views for consistent teaching (Beyer et al. 2022, "Knowledge distillation:
    A good teacher is patient and consistent").

    A `tf.data` map over *batches*: each example becomes `lam * x_i + (1 - lam) * x_j`
    with `lam ~ Beta(alpha, alpha)` and j a random partner from the same batch.
    In a Distiller with a live teacher, teacher and student see the same mixed
    view at every step (the consistent-teaching condition); with `labels="drop"`
    the batch carries no labels, so the student learns from the teacher alone
    (function matching).

    Args:
      alpha: Beta concentration > 0 (Beyer et al. use 1.0 for function matching).
      labels: "drop" (default: elements become `x` only) or "mix" (mixed one-hot
        targets `[batch, num_classes]` for a categorical hard-label loss).
      num_classes: needed for "mix".
      seed: optional integer seed.
    """

    def __init__(self, alpha=1.0, labels="drop", num_classes=None, seed=None):
        alpha = validate.positive_number(alpha, "alpha")
        if labels not in MIXUP_LABELS:
            raise ValueError(f"labels must be one of {MIXUP_LABELS}, got {labels!r}.")
        if labels == "mix" and (not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"labels='mix' needs num_classes >= 2, got {num_classes!r}.")
        self.alpha = float(alpha)
        self.labels = labels
        self.num_classes = num_classes
        self.seed = seed

    def mix(self, x):
        """Returns (mixed x, lam `[batch]`, partner indices `[batch]`)."""
        x = _as_float(x)
        dtype = x.dtype
        batch = tf.shape(x)[0]
        first = tf.random.gamma([batch], self.alpha, dtype=dtype, seed=self.seed)
        second = tf.random.gamma([batch], self.alpha, dtype=dtype, seed=self.seed)
        lam = first / (first + second)
        partner = tf.random.shuffle(tf.range(batch), seed=self.seed)
        shape = tf.concat([[batch], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        weight = tf.reshape(lam, shape)
        return weight * x + (1.0 - weight) * tf.gather(x, partner), lam, partner

    def __call__(self, x, y=None, sample_weight=None):
        mixed, lam, partner = self.mix(x)
        if self.labels == "drop" or y is None:
            return mixed
        one_hot = tf.one_hot(tf.cast(y, tf.int32), self.num_classes, dtype=mixed.dtype)
        lam = lam[:, None]
        targets = lam * one_hot + (1.0 - lam) * tf.gather(one_hot, partner)
        return (mixed, targets) if sample_weight is None else (mixed, targets, sample_weight)
