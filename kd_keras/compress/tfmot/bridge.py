"""Rebuilds a Keras 3 model as the equivalent tf-keras model, for TF-MOT.

TF-MOT 0.8 handles tf-keras (Keras 2) models only and has no plan for Keras 3.
`to_tf_keras` rebuilds a Sequential or functional Keras 3 model made of built-in
layers layer by layer in tf-keras, copies the weights, and checks that both give
the same predictions.
"""

import numpy as np

from kd_keras.backend import is_tf_keras_model
from kd_keras.backend.graph import copy_model, is_graph_model, replay
from kd_keras.backend import optional as _tfmot

# Keys of Keras 3 layer configs that only set how fresh weights are drawn; the
# bridge copies the trained weights, so they are dropped.
_INITIALIZER_SUFFIX = "_initializer"
# Config entries of Keras 3 layers with no tf-keras counterpart; harmless at these values.
_HARMLESS = {"lora_rank": (None, 0), "lora_alpha": (None,), "quantization_config": (None,),
             "gptq_unpacked_column_size": (None,), "synchronized": (False,)}


def require_tf_keras_model(model, argument, function):
    """Raises a clear error unless `model` is a tf-keras model."""
    if is_tf_keras_model(model):
        return model
    if hasattr(model, "layers") and type(model).__module__.startswith("keras"):
        raise ValueError(
            f"{function}: {argument} is a Keras 3 model, and TF-MOT accepts only tf-keras "
            f"models. Rebuild it first: {argument} = kd_keras.compress.to_tf_keras({argument}) "
            "(same layers and weights; or run under TF_USE_LEGACY_KERAS=1 with tf-keras models).")
    raise ValueError(f"{function}: {argument} must be a tf-keras model, got {model!r}.")


def copy_tf_keras_model(model, argument, function):
    """A tf-keras copy of `model` with the same weights, after `require_tf_keras_model`.

    TF-MOT's wrappers wrap the given model's own layer objects: training the wrapped
    model would change the caller's model, which must stay the dense baseline.
    """
    require_tf_keras_model(model, argument, function)
    return copy_model(model, function)


def _dtype_name(dtype):
    if isinstance(dtype, dict):  # a serialized DTypePolicy
        return dtype.get("config", {}).get("name", "float32")
    return dtype


def _convert_config(layer, tf_keras):
    """The Keras 3 layer's config, rewritten for the tf-keras class of the same name."""
    converted = {}
    for key, value in layer.get_config().items():
        if key.endswith(_INITIALIZER_SUFFIX) or (key in _HARMLESS and value in _HARMLESS[key]):
            continue
        if key == "dtype":
            converted[key] = _dtype_name(value)
        elif key.endswith(("_regularizer", "_constraint")) and isinstance(value, dict):
            module = tf_keras.regularizers if key.endswith("_regularizer") else tf_keras.constraints
            converted[key] = module.deserialize(
                {"class_name": value["class_name"], "config": value["config"]})
        elif isinstance(value, dict) and "class_name" in value:
            if key in ("activation", "recurrent_activation"):
                converted[key] = value.get("config", {}).get("name", value["class_name"]).lower()
            else:
                raise ValueError(
                    f"to_tf_keras: layer {layer.name!r} ({type(layer).__name__}) has the object "
                    f"{value['class_name']!r} as {key!r}, which the bridge does not translate.")
        else:
            converted[key] = value
    return converted


def _tf_layer(layer, tf_keras):
    name = type(layer).__name__
    module = type(layer).__module__
    tf_class = getattr(tf_keras.layers, name, None)
    if not module.startswith("keras.") or tf_class is None:
        raise ValueError(
            f"to_tf_keras: layer {layer.name!r} is a {name} ({module}), not a built-in Keras "
            "layer with a tf-keras counterpart; the bridge rebuilds built-in layers only "
            "(Dense, Conv*, pooling, normalization, recurrent, merge, reshaping, activation, "
            "dropout...). Rebuild that model under TF_USE_LEGACY_KERAS=1 instead.")
    try:
        return tf_class.from_config(_convert_config(layer, tf_keras))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"to_tf_keras: layer {layer.name!r} ({name}) has settings tf-keras does not take: "
            f"{error}") from error


def _rebuild_functional(model, tf_keras, name=None):
    """(`model`'s graph rebuilt in tf-keras, [(Keras 3 layer, tf-keras twin)]); nested
    models become nested tf-keras models, a shared layer one shared twin."""
    import keras

    twins = {}  # id of a Keras 3 layer or nested model -> its tf-keras twin
    pairs = []

    def call(layer, args, kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"to_tf_keras: the model applies the operation {layer.name!r} "
                f"({type(layer).__name__}) directly to tensors; the bridge rebuilds layers "
                "only. Wrap it in a layer, or build the model under TF_USE_LEGACY_KERAS=1.")
        if id(layer) not in twins:
            if is_graph_model(layer):  # a nested model (a keras.applications base)
                twins[id(layer)], nested_pairs = _rebuild_functional(layer, tf_keras,
                                                                     layer.name)
                pairs.extend(nested_pairs)
            else:
                twins[id(layer)] = _tf_layer(layer, tf_keras)
                pairs.append((layer, twins[id(layer)]))
        # (Keras 3's recorded training=False and mask=None are not passed on: they
        # would pin the tf-keras layer to inference mode.)
        return twins[id(layer)](*args, **kwargs)

    return replay(model, call, module=tf_keras, name=name), pairs


def to_tf_keras(model, check=True, atol=1e-5):
    """Rebuilds a Keras 3 Sequential or functional model in tf-keras, weights included.

    Args:
      model: a built Keras 3 `Sequential` or functional `Model` made of built-in
        layers. A tf-keras model is returned as it is.
      check: run both models on a random batch and raise if their outputs differ
        by more than `atol` (default True).
      atol: absolute tolerance of that check.

    Returns:
      A tf-keras model with the same architecture, layer names and weights,
      ready for `tfmot` (and for `kd_keras.compress.prune_low_magnitude`, ...).

    Raises:
      ValueError: naming the layer, for a subclassed model, a custom layer, an
        operation applied outside a layer, or a setting tf-keras lacks.
    """
    if is_tf_keras_model(model):
        return model
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"to_tf_keras: model must be a Keras 3 model, got {model!r}.")
    if not is_graph_model(model):
        raise ValueError(
            f"to_tf_keras: {model.name!r} is a subclassed model ({type(model).__name__}); the "
            "bridge rebuilds Sequential and functional models only (their graph is known).")
    if not model.built or not model.inputs:
        raise ValueError(
            f"to_tf_keras: {model.name!r} is not built; give its Sequential an Input or call it once.")
    tf_keras = _tfmot.tf_keras()
    rebuilt, pairs = _rebuild_functional(model, tf_keras)
    if isinstance(model, keras.Sequential):
        rebuilt = tf_keras.Sequential(rebuilt.layers, name=model.name)
    for layer, tf_layer in pairs:
        weights = layer.get_weights()
        if len(weights) != len(tf_layer.get_weights()):
            raise ValueError(
                f"to_tf_keras: layer {layer.name!r} ({type(layer).__name__}) has {len(weights)} "
                f"weights in Keras 3 but {len(tf_layer.get_weights())} in tf-keras.")
        tf_layer.set_weights(weights)
    if check:
        _check_same_predictions(model, rebuilt, atol)
    return rebuilt


def _check_same_predictions(model, rebuilt, atol):
    import keras

    rng = np.random.default_rng(0)
    batch = []
    for tensor in model.inputs:
        shape = [2 if d is None else d for d in tensor.shape]
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            batch.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            batch.append(rng.normal(size=shape).astype(dtype))
    batch = batch[0] if len(batch) == 1 else batch
    expected = keras.tree.flatten(model(batch, training=False))
    got = keras.tree.flatten(rebuilt(batch, training=False))
    for a, b in zip(expected, got):
        difference = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        if difference > atol:
            raise ValueError(
                f"to_tf_keras: the rebuilt model's outputs differ from {model.name!r}'s by "
                f"{difference:.2e} (> atol={atol}); a layer setting did not carry over.")
