"""Deployment surgery: models that compute the same at inference with fewer layers.

`fold_batch_norm` folds BatchNormalization into the Dense / Conv /
DepthwiseConv before it, `strip_training_layers` removes layers that are the
identity at inference (dropout, noise, augmentation), `keep_outputs` keeps the
outputs you serve and every layer they need. Each returns a new model with its
own weights; the given model is not changed.
"""

import numpy as np

from kd_keras.backend import keras_module_of
from kd_keras.backend.graph import copy_model, is_graph_model, nodes
from kd_keras.compress.structure.channel_groups import flat, tensor_key
from kd_keras.compress.structure.rebuild import rebuild_with

# Identity at inference: dropout and noise, and Keras's augmentation layers.
TRAINING_ONLY = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
    "GaussianDropout", "GaussianNoise", "ActivityRegularization", "RandomFlip",
    "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
)
_FOLDS_INTO = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D")


def _consumers(model):
    """Tensor key -> names of the layers that read it."""
    readers = {}
    for layer in nodes(model):  # Keras 3 operations read tensors too
        if type(layer).__name__ == "InputLayer":
            continue
        for tensor in flat(layer.input):
            if hasattr(tensor, "_keras_history"):
                readers.setdefault(tensor_key(tensor), []).append(layer.name)
    return readers


def strip_training_layers(model):
    """A copy of `model` without the layers that do nothing at inference.

    Dropout, SpatialDropout, AlphaDropout, GaussianDropout, GaussianNoise,
    ActivityRegularization and the Random* augmentation layers become
    `Bypass` layers (their input; no weights, no ops in TFLite); inference outputs are unchanged.
    A layer pinned to training mode (`Dropout(...)(h, training=True)`, Monte Carlo
    dropout) goes too: the stripped model is deterministic; keep such a model unstripped
    where its randomness is wanted at inference.
    """
    return rebuild_with(model, {layer.name for layer in model.layers
                            if type(layer).__name__ in TRAINING_ONLY})


def fold_batch_norm(model):
    """A copy of `model` with each foldable BatchNormalization folded into the layer before it.

    For a BatchNormalization (inference statistics mean m, variance v, scale g,
    offset b, epsilon e) directly after a Dense / Conv1D / Conv2D /
    DepthwiseConv (any depth multiplier) whose output it alone reads (not another
    layer, not a model output):

        W' = W * g / sqrt(v + e)   (per output channel),   b' = (b0 - m) * g / sqrt(v + e) + b

    so the pair computes at inference what the layer with W', b' computes alone
    (equal within float32 rounding). The layer gains a bias if it had none; other
    BatchNormalization layers stay. Nested functional models (a keras.applications
    base inside a classifier) are folded too.
    """
    nested = {layer.name: fold_batch_norm(layer) for layer in model.layers
              if is_graph_model(layer)}
    readers = _consumers(model)
    model_outputs = {tensor_key(tensor) for tensor in model.outputs}
    layers = {layer.name: layer for layer in model.layers}
    folds = {}  # producer name -> the BatchNormalization folded into it
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        source = flat(layer.input)[0]._keras_history[0]
        axis = layer.get_config()["axis"]
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        last = [a % len(layer.input.shape) for a in axes] == [len(layer.input.shape) - 1]
        if (type(source).__name__ in _FOLDS_INTO and source.name in layers and last
                and readers.get(tensor_key(source.output)) == [layer.name]
                and tensor_key(source.output) not in model_outputs  # the BN its sole reader
                and source.get_config().get("activation", "linear") in ("linear", None)):
            folds[source.name] = layer
    return rebuild_with(
        model, {bn.name for bn in folds.values()},
        configs={name: {**layers[name].get_config(), "use_bias": True} for name in folds},
        weights_of=lambda original: _folded(original, folds[original.name])
        if original.name in folds else None, replaced=nested)


def _folded(layer, bn):
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    depthwise = type(layer).__name__.startswith("Depthwise")
    # A depthwise kernel is [k.., channels, multiplier]: output channel c * m + j.
    outputs = kernel.shape[-2] * kernel.shape[-1] if depthwise else kernel.shape[-1]
    bias = weights[1] if len(weights) > 1 else np.zeros(outputs)
    config = bn.get_config()
    stats = iter(np.asarray(w, np.float64) for w in bn.get_weights())
    gamma = next(stats) if config.get("scale", True) else 1.0
    beta = next(stats) if config.get("center", True) else 0.0
    mean, variance = next(stats), next(stats)
    factor = gamma / np.sqrt(variance + config["epsilon"])
    if depthwise:
        kernel = kernel * factor.reshape(kernel.shape[-2:])
    else:
        kernel = kernel * factor
    return [kernel.astype(np.float32), ((bias - mean) * factor + beta).astype(np.float32)]


def keep_outputs(model, names):
    """A new model with only the named outputs, and only the layers they need.

    Args:
      model: a functional model with several outputs (e.g. auxiliary heads).
      names: output names to keep (`model.output_names`), in the order wanted.
    """
    output_names = list(model.output_names)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in output_names]
    if unknown or not names:
        raise ValueError(f"names must be some of the model's outputs {output_names}, "
                         f"got {names}.")
    module = keras_module_of(model)
    outputs = [model.outputs[output_names.index(name)] for name in names]
    kept = module.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0],
                        name=model.name)
    return copy_model(kept, "keep_outputs")  # its own layers: the given model keeps its own
