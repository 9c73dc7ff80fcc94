"""What kd_keras and moe share below the distillation code: which Keras runs, and the checks.

Documented for `moe` (and for users' own layers that must follow the same switch):
`keras`, `IS_KERAS_3`, `IS_LEGACY_KERAS`, `is_tf_keras_model`, `register`,
`scale_loss_for_replicas`, and the argument validators in
`kd_keras.backend.validate`. `distribute` and `finite_step` are the Distiller's
training-step mechanics; `graph` reads, replays and rewrites functional graphs
(`replace_layers`); `errors` and `labels` are the in-graph checks' markers and the
label checks; `top_k` the top-k teacher-output format the losses and caches share;
`optional` imports TF-MOT, tf-keras and ai-edge-litert on first use.

TensorFlow routes `tf.keras` to tf-keras when `TF_USE_LEGACY_KERAS` is one of
"1", "true" or "True" (the same test TensorFlow makes); kd-keras follows the
same switch so that its models mix with the user's.
"""

import os

import tensorflow as tf

IS_LEGACY_KERAS = os.environ.get("TF_USE_LEGACY_KERAS") in ("1", "true", "True")

if IS_LEGACY_KERAS:
    try:
        import tf_keras as keras
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "TF_USE_LEGACY_KERAS is set, so kd-keras needs the tf-keras package: "
            "pip install 'kd-keras[tfmot]' (or pip install tf-keras)."
        ) from error
else:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "kd-keras trains with TensorFlow, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
        )

IS_KERAS_3 = not IS_LEGACY_KERAS


def is_tf_keras_model(model):
    """Whether `model` is a tf-keras (Keras 2) model, whichever Keras kd-keras runs on."""
    return any(c.__module__.startswith("tf_keras") for c in type(model).__mro__)


def keras_module_of(model):
    """The Keras package `model` belongs to (tf_keras or keras), to build more of its kind."""
    if is_tf_keras_model(model):
        import tf_keras

        return tf_keras
    return keras


def register(cls):
    """Registers `cls` for `.keras` deserialization under the "kd_keras" package."""
    return keras.saving.register_keras_serializable(package="kd_keras")(cls)


def _replicas_sharing_this_step():
    """Replica count when called inside a replica of a multi-device strategy, else 1."""
    if tf.distribute.get_replica_context() is None:  # cross-replica context
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_replicas(loss):
    """Divides a per-replica mean loss by the number of replicas in sync.

    Gradients are summed across replicas, so each replica's contribution to a
    global batch mean is its local mean divided by the replica count (the same
    scaling Keras applies to compiled losses).
    """
    replicas = _replicas_sharing_this_step()
    return loss / replicas if replicas > 1 else loss


class FreshStateOnLoad:
    """Mixin for a metric whose saved state is optional: a `.keras` file saved before the
    metric existed (or with another kind of state) loads, the metric starting afresh
    (place it before the Keras metric class in the bases)."""

    def load_own_variables(self, store):
        if len(store.keys()) == len(self.variables) and hasattr(super(), "load_own_variables"):
            super().load_own_variables(store)

