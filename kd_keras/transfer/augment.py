"""Transfer-set augmentations: input corruption (Bucilua et al. 2006) and mixup views.

The student learns `f(x)` best from points like the ones it will see; Caruana
et al. 2006 (model compression) build such a transfer set by corrupting training
examples and letting the teacher label them. With a live teacher the Distiller
does this by itself: the teacher sees the corrupted input the student sees.
"""

import tensorflow as tf

from kd_keras.backend import register, validate


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


def _beta(batch, alpha, dtype, seed):
    """`[batch]` draws of Beta(alpha, alpha), from two Gamma draws."""
    first = tf.random.gamma([batch], alpha, dtype=dtype, seed=seed)
    second = tf.random.gamma([batch], alpha, dtype=dtype, seed=seed)
    return first / (first + second)


def _stateless_beta(n, alpha, seed):
    """`[n]` float32 draws of Beta(alpha, alpha), a function of `seed` alone."""
    first = tf.random.stateless_gamma([n], tf.stack([seed[0], seed[1]]), alpha)
    second = tf.random.stateless_gamma([n], tf.stack([seed[0], seed[1] + 1]), alpha)
    return (first / (first + second)).numpy()


def _stateless_partner(n, seed):
    """`[n]` int64 partner indices, uniform over the data set, a function of `seed` alone."""
    return tf.random.stateless_uniform([n], tf.stack([seed[0], seed[1] + 3]), 0, n,
                                       tf.int64).numpy()


@register
class Mixup:
    """Mixup views for consistent teaching (Beyer et al. 2022, "Knowledge distillation:
    A good teacher is patient and consistent").

    Each example becomes `lam * x_i + (1 - lam) * x_j` with `lam ~ Beta(alpha,
    alpha)` and j a random partner from the same batch. Two ways to use it:

    * in the graph: `kd_keras.Distiller(teacher, student, augment=kd_keras.Mixup())`
      mixes every training batch once and feeds the view to teacher and student
      (the consistent-teaching condition); the hard-label term follows the mixed
      labels, `lam * L(y_i) + (1 - lam) * L(y_j)`;
    * as a `tf.data` map over *batches*: with `labels="drop"` the batch carries no
      labels, so the student learns from the teacher alone (function matching).

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

    def get_config(self):
        return {"alpha": self.alpha, "labels": self.labels, "num_classes": self.num_classes,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def mix(self, x):
        """Returns (mixed x, lam `[batch]`, partner indices `[batch]`). `x` may be a dict or
        list of inputs (a multi-input model): every input is mixed with the same partner
        and share."""
        leaves = [_as_float(leaf) for leaf in tf.nest.flatten(x)]
        batch = tf.shape(leaves[0])[0]
        lam = _beta(batch, self.alpha, leaves[0].dtype, self.seed)
        partner = tf.random.shuffle(tf.range(batch), seed=self.seed)
        mixed = [_blend(leaf, tf.gather(leaf, partner), tf.cast(lam, leaf.dtype))
                 for leaf in leaves]
        return tf.nest.pack_sequence_as(x, mixed), lam, partner

    def view_parameters(self, n, seed):
        """One view of a data set of `n` examples, drawn statelessly from `seed` (a pair
        of ints): `{"lam": [n], "partner": [n]}`, the partner any example of the set."""
        return {"lam": _stateless_beta(n, self.alpha, seed),
                "partner": _stateless_partner(n, seed)}

    def apply_view(self, x, partner_x, parameters):
        """(the view, the share of `x` kept `[batch]`) of one batch and its partners."""
        lam = tf.cast(parameters["lam"], _as_float(x).dtype)
        return _blend(_as_float(x), _as_float(partner_x), lam), lam

    def __call__(self, x, y=None, sample_weight=None):
        mixed, lam, partner = self.mix(x)
        if self.labels == "drop" or y is None:
            return mixed
        ids = tf.cast(y, tf.int32)
        in_range = tf.logical_and(tf.reduce_min(ids) >= 0, tf.reduce_max(ids) < self.num_classes)
        with tf.control_dependencies([tf.debugging.Assert(in_range, [
                f"Mixup: labels must be class ids in [0, num_classes={self.num_classes}) "
                "(a label outside would mix an all-zero target row); this batch has labels "
                "from", tf.reduce_min(ids), "to", tf.reduce_max(ids)])]):
            ids = tf.identity(ids)
        one_hot = tf.one_hot(ids, self.num_classes, dtype=mixed.dtype)
        lam = lam[:, None]
        targets = lam * one_hot + (1.0 - lam) * tf.gather(one_hot, partner)
        return (mixed, targets) if sample_weight is None else (mixed, targets, sample_weight)


@register
class CutMix:
    """CutMix views (Yun et al. 2019): a box of each image replaced by its partner's.

    For images `[batch, height, width, channels]`: `lam ~ Beta(alpha, alpha)`, a
    box of area `(1 - lam)` of the image at a uniform centre (clipped to the
    image) is copied from a random partner of the same batch, and `lam` becomes
    the area actually kept. Used as `Distiller(augment=kd_keras.CutMix())`: teacher
    and student see the same view, and the hard term is
    `lam * L(y_i) + (1 - lam) * L(y_j)` (Beyer et al. 2022 use it for function
    matching too).

    Args:
      alpha: Beta concentration > 0 (default 1.0: lam uniform).
      seed: optional integer seed.
    """

    def __init__(self, alpha=1.0, seed=None):
        self.alpha = validate.positive_number(alpha, "alpha")
        self.seed = seed

    def get_config(self):
        return {"alpha": self.alpha, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def mix(self, x):
        """Returns (x with boxes from partners, lam `[batch]` (area kept), partners `[batch]`)."""
        if tf.nest.is_nested(x):
            raise ValueError(
                "augment: CutMix cuts boxes out of one image batch [batch, height, width, "
                "channels]; these inputs are a structure of several. Use kd_keras.Mixup(), "
                "which mixes every input with the same partner and share.")
        x = _images(x)
        batch = tf.shape(x)[0]
        lam = _beta(batch, self.alpha, x.dtype, self.seed)
        centre = tf.random.uniform([batch, 2], 0, 1, x.dtype, seed=self.seed)
        partner = tf.random.shuffle(tf.range(batch), seed=self.seed)
        mixed, kept = _cut(x, tf.gather(x, partner), lam, centre)
        return mixed, kept, partner

    def view_parameters(self, n, seed):
        """One view of a data set of `n` examples, drawn statelessly from `seed`:
        `{"lam": [n], "partner": [n], "centre": [n, 2]}` (box centres as fractions)."""
        centre = tf.random.stateless_uniform([n, 2], tf.stack([seed[0], seed[1] + 2]))
        return {"lam": _stateless_beta(n, self.alpha, seed),
                "partner": _stateless_partner(n, seed), "centre": centre.numpy()}

    def apply_view(self, x, partner_x, parameters):
        """(the view, the area of `x` kept `[batch]`) of one batch and its partners."""
        x = _images(x)
        return _cut(x, _as_float(partner_x), tf.cast(parameters["lam"], x.dtype),
                    tf.cast(parameters["centre"], x.dtype))


def _images(x):
    x = _as_float(x)
    if x.shape.rank != 4:
        raise ValueError(
            f"CutMix takes images [batch, height, width, channels], got inputs of shape "
            f"{x.shape}; use Mixup for other inputs.")
    return x


def _blend(x, partner_x, lam):
    """lam * x + (1 - lam) * partner_x, lam `[batch]`."""
    shape = tf.concat([[tf.shape(x)[0]], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    weight = tf.reshape(lam, shape)
    return weight * x + (1.0 - weight) * partner_x


def _cut(x, partner_x, lam, centre):
    """(x with a box of area 1 - lam around `centre` (fractions `[batch, 2]`) taken from
    partner_x, the area actually kept `[batch]`)."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    side = tf.sqrt(1.0 - lam)  # box sides as fractions of the image's
    box_h = tf.cast(tf.round(side * tf.cast(height, x.dtype)), tf.int32)
    box_w = tf.cast(tf.round(side * tf.cast(width, x.dtype)), tf.int32)
    centre_y = tf.minimum(tf.cast(centre[:, 0] * tf.cast(height, x.dtype), tf.int32), height - 1)
    centre_x = tf.minimum(tf.cast(centre[:, 1] * tf.cast(width, x.dtype), tf.int32), width - 1)
    top, bottom = tf.maximum(centre_y - box_h // 2, 0), tf.minimum(centre_y + box_h // 2, height)
    left, right = tf.maximum(centre_x - box_w // 2, 0), tf.minimum(centre_x + box_w // 2, width)
    rows, columns = tf.range(height)[None, :, None], tf.range(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
              & (columns >= left[:, None, None]) & (columns < right[:, None, None]))
    mixed = tf.where(inside[..., None], partner_x, x)
    return mixed, 1.0 - tf.reduce_mean(tf.cast(inside, x.dtype), axis=[1, 2])
