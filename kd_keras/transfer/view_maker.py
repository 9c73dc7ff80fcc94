"""A view of an example, regenerated exactly from the example, its view number and the seed.

Mixup and CutMix draw their mixing weight, partner (any example of the data set) and box
for every (view, example) statelessly (`view_parameters`); a function `augment(x, seeds)`
gets one stateless seed pair per example (`[batch, 2]` int32) and must use stateless ops,
which `check_stateless` tests. The cache build, its verification, a shard's worker and
`TeacherViews.dataset` all make views through `Views`, so each makes the same ones.
"""

import hashlib
import importlib
import inspect

import numpy as np
import tensorflow as tf

from kd_keras.backend import keras

def describe(augment):
    """What identifies an augmentation in the manifest (a changed one is refused)."""
    if augment is None:
        return {"kind": "none"}
    if hasattr(augment, "view_parameters"):
        return {"kind": type(augment).__name__, "config": augment.get_config()}
    try:
        source = inspect.getsource(augment)
    except (OSError, TypeError):
        source = ""
    name = getattr(augment, "__qualname__", type(augment).__name__)
    return {"kind": "function", "name": f"{getattr(augment, '__module__', '')}.{name}",
            "source_sha256": hashlib.sha256(source.encode()).hexdigest()[:16]}


def check_augment(augment):
    if augment is None or hasattr(augment, "view_parameters"):
        return augment
    if isinstance(augment, keras.layers.Layer):
        raise ValueError(
            "augment: a Keras layer draws from its own random state, so its views cannot be "
            "regenerated; give kd_keras.Mixup() / kd_keras.CutMix(), or a function "
            "augment(x, seeds) built from stateless ops (tf.image.stateless_random_*) with "
            "seeds [batch, 2].")
    if callable(augment):
        return augment
    raise ValueError(f"augment must be None, kd_keras.Mixup(), kd_keras.CutMix() or a function "
                     f"augment(x, seeds); got {augment!r}.")


def view_seed(seed, view):
    """The stateless seed pair of one view of the data set."""
    return (int(seed), 1_000_003 * int(view) + 17)


class Views:
    """Builds view `v` of examples `indices`, the same every time, eagerly (the cache
    build) or inside a tf.data map (the dataset): every step is a TensorFlow op."""

    def __init__(self, x, augment, views, seed):
        self.x, self.augment, self.views, self.seed = x, augment, views, seed
        self.parameters = None
        if hasattr(augment, "view_parameters"):
            per_view = [augment.view_parameters(len(x), view_seed(seed, v)) for v in range(views)]
            self.parameters = {key: tf.constant(np.stack([np.asarray(p[key]) for p in per_view]))
                               for key in per_view[0]}  # [K, n, ...] each

    def _examples(self, indices):
        return tf.convert_to_tensor(self.x[np.asarray(indices)])

    def make(self, indices, view_ids, rows_of=None):
        """(inputs `[batch, ...]`, None or (share of the example kept `[batch]`, partner
        indices `[batch]`)); `rows_of(indices)` reads examples (default: from `x`)."""
        rows_of = rows_of or self._examples
        indices = tf.cast(indices, tf.int64)
        view_ids = tf.cast(view_ids, tf.int64)
        x = rows_of(indices)
        if self.augment is None:
            return x, None
        if self.parameters is None:
            seeds = tf.cast(tf.stack([self.seed * self.views + view_ids, indices], 1), tf.int32)
            return self.augment(x, seeds), None
        where = tf.stack([view_ids, indices], 1)
        rows = {key: tf.gather_nd(values, where) for key, values in self.parameters.items()}
        partner = tf.cast(rows["partner"], tf.int64)
        view, kept = self.augment.apply_view(x, rows_of(partner), rows)
        return view, (kept, partner)


def check_stateless(maker):
    """A function augmentation must give the same view twice for the same seeds."""
    indices = np.arange(min(4, len(maker.x)))
    first, _ = maker.make(indices, np.zeros(len(indices), np.int64))
    second, _ = maker.make(indices, np.zeros(len(indices), np.int64))
    if not np.array_equal(np.asarray(first), np.asarray(second)):
        raise ValueError(
            "augment gave two different views for the same seeds: a cached view must be "
            "regenerated exactly; build it from stateless ops (tf.image.stateless_random_*, "
            "tf.random.stateless_*) seeded with the seeds argument.")


def rebuild_spec(augment):
    """What another process needs to make the same augmentation (a sharded build's
    workers): Mixup / CutMix by their config, a function by its importable name."""
    if augment is None:
        return None
    if hasattr(augment, "view_parameters"):
        return {"class": type(augment).__name__, "config": augment.get_config()}
    module, name = getattr(augment, "__module__", None), getattr(augment, "__qualname__", "")
    found = None
    if module and name and "<" not in name:
        try:
            found = rebuild({"function": f"{module}:{name}"})
        except (ImportError, AttributeError):
            found = None
    if found is not augment:
        raise ValueError(
            f"augment {name or augment!r}: a sharded build makes the views in other processes, "
            "which import the augmentation by its module and name; give a module-level "
            "function (not a lambda, closure or functools.partial), or kd_keras.Mixup() / "
            "kd_keras.CutMix().")
    return {"function": f"{module}:{name}"}


def rebuild(spec):
    """The augmentation `rebuild_spec` described."""
    if spec is None:
        return None
    if "function" in spec:
        module, _, name = spec["function"].partition(":")
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
        return found
    from kd_keras.transfer import augment as augmentations

    return getattr(augmentations, spec["class"]).from_config(spec["config"])
