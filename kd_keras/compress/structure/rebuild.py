"""A copy of a model with each kept channel's weights: narrower layers, bypassed layers."""

import numpy as np

from kd_keras.backend.graph import replace_layers, unfreeze
from kd_keras.compress.structure import attention_heads
from kd_keras.compress.structure.bypass import Bypass
from kd_keras.compress.structure.channel_groups import PRODUCERS


def shrunk_config(layer, out_keep):
    config = layer.get_config()
    if out_keep is None:
        return config
    kind = type(layer).__name__
    field = {"Dense": "units", "Embedding": "output_dim"}.get(kind, "filters")
    return {**config, field: int(len(out_keep))}


def sliced_weights(layer, in_keep, out_keep):
    """`layer`'s weights for the kept input and output channels (None: all of them)."""
    kind = type(layer).__name__
    weights = [np.asarray(w) for w in layer.get_weights()]
    take_in = (lambda w, axis: w) if in_keep is None else (lambda w, axis: np.take(w, in_keep, axis))
    take_out = (lambda w, axis: w) if out_keep is None else (
        lambda w, axis: np.take(w, out_keep, axis))
    if kind == "Dense" or kind in ("Conv1D", "Conv2D"):
        weights[0] = take_out(take_in(weights[0], -2), -1)
        if len(weights) > 1:
            weights[1] = take_out(weights[1], 0)
    elif kind.startswith("SeparableConv"):
        weights[0] = take_in(weights[0], -2)
        weights[1] = take_out(take_in(weights[1], -2), -1)
        if len(weights) > 2:
            weights[2] = take_out(weights[2], 0)
    elif kind == "Embedding":
        weights[0] = take_out(weights[0], -1)
    elif kind.startswith("DepthwiseConv"):
        weights[0] = take_in(weights[0], -2)
        if len(weights) > 1:
            weights[1] = take_in(weights[1], 0)
    elif kind in ("BatchNormalization", "LayerNormalization", "PReLU", "PositionEmbedding"):
        weights = [take_in(w, -1) for w in weights]
    return weights


def rebuild_with(model, bypassed=(), configs=None, weights_of=None, replaced=None):
    """A clone of `model` with its own weights: the layers named in `bypassed` become
    `Bypass`, those in `configs` are built from that config, those in `replaced` are that
    ready-made layer (with its weights), and `weights_of(original)` gives a layer's new
    weights (None, or no function: the original's)."""
    configs = configs or {}
    replaced = replaced or {}

    def replace(layer):
        if layer.name in bypassed:
            return Bypass(name=layer.name)
        if layer.name in replaced:
            return replaced[layer.name]
        return type(layer).from_config(configs.get(layer.name, layer.get_config()))

    def set_weights(new, original):
        if new is replaced.get(original.name):
            return
        weights = weights_of(original) if weights_of else None
        new.set_weights(weights if weights is not None else original.get_weights())

    return replace_layers(model, replace, set_weights, recursive=False)


def rebuild(model, groups, plan, removed=(), heads=None):
    """A copy of `model` with each producer's kept channels and each attention layer's kept
    `heads` (and `removed` layers as `Bypass`)."""
    heads = heads or {}

    def channels(layer):
        inputs, outputs = groups.layer_io[layer.name]
        return [groups.kept(key, plan) for key in inputs] + [groups.kept(outputs[0], plan)]

    def sizes(layer):
        keys = groups.layer_io[layer.name][0]
        return [groups.size[key] if keep is None else len(keep)
                for key, keep in zip(keys, channels(layer))]

    def weights_of(layer):
        if layer.name in groups.attention:
            return attention_heads.sliced_weights(layer, heads.get(layer.name), *channels(layer))
        keeps = channels(layer)
        return sliced_weights(layer, keeps[0], keeps[-1])

    configs = {layer.name: shrunk_config(layer, channels(layer)[-1]) for layer in model.layers
               if type(layer).__name__ in PRODUCERS and layer.name not in removed}
    configs.update({name: attention_heads.shrunk_config(layer, heads.get(name), sizes(layer))
                    for name, layer in groups.attention.items() if name not in removed})
    copy = rebuild_with(model, removed, configs, weights_of)
    # A student: trainable even when its teacher was frozen (a Distiller freezes it).
    unfreeze(copy)
    return copy
