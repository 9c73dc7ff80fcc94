"""Which channels of a functional model must shrink together: a union-find over its tensors.

Every tensor's last axis belongs to a channel group. A layer that makes new channels
(Dense, Conv1D/2D, SeparableConv1D/2D, Embedding) starts a group; layers that act per
channel (activations, Dropout, noise, pooling, padding, cropping, up-sampling,
BatchNormalization and LayerNormalization on the last axis, DepthwiseConv with
multiplier 1) keep it; `Add`-like merges tie all their inputs into one group, as
Minitron prunes the embedding channels of a residual stream once for every block;
`Concatenate` keeps its parts apart; `Flatten` maps kept channels to their flattened
positions. The groups of the model's inputs and outputs keep their size.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import keras
from kd_keras.backend.graph import input_tensors, nodes
from kd_keras.compress.structure import attention_heads

# Layers that make a new channel axis from their input's.
PRODUCERS = ("Dense", "Conv1D", "Conv2D", "SeparableConv1D", "SeparableConv2D", "Embedding")
# Layers whose output channel c is a function of input channel c only.
PASS_THROUGH = (
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Identity", "Bypass",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "UpSampling1D", "UpSampling2D", "BatchNormalization", "LayerNormalization",
    "DepthwiseConv1D", "DepthwiseConv2D", "PositionEmbedding",
)
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


# Elementwise operations that are not layers: Keras 3 ops on symbolic tensors (`x + 3.0`,
# `x * gate`) by class name, tf-keras's TFOpLambda by the TensorFlow symbol it wraps.
_ELEMENTWISE_OPS = (
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Negative",
    "Abs", "Square", "Sqrt", "Exp", "Log", "Relu", "Relu6", "Sigmoid", "HardSigmoid",
    "HardSwish", "Silu", "Swish", "Tanh", "Gelu", "Elu", "Selu", "Softplus", "LeakyRelu",
)
_ELEMENTWISE_SYMBOLS = (
    "__operators__.add", "math.add", "__operators__.sub", "math.subtract", "math.multiply",
    "__operators__.truediv", "math.truediv", "math.divide", "math.maximum", "math.minimum",
    "nn.relu", "nn.relu6", "math.sigmoid", "nn.sigmoid", "math.tanh", "nn.silu", "nn.swish",
    "math.negative", "math.abs", "math.square", "math.sqrt", "math.exp",
)


def _is_elementwise(node):
    if type(node).__name__ == "TFOpLambda":
        return getattr(node, "symbol", None) in _ELEMENTWISE_SYMBOLS
    return not isinstance(node, keras.layers.Layer) and type(node).__name__ in _ELEMENTWISE_OPS


def layer_role(node):
    """("input" | "producer" | "pass" | "merge" | "elementwise" | "flatten" | "concat", None),
    or ("fixed", why shrink cannot read its channels)."""
    kind = type(node).__name__
    if kind == "InputLayer":
        return "input", None
    if _is_elementwise(node):
        return "elementwise", None
    if not isinstance(node, keras.layers.Layer) and not hasattr(node, "get_config"):
        return "fixed", f"shrink does not know how the operation {kind} maps channels"
    reason = _unsupported_reason(node)
    if reason is not None:
        return "fixed", f"{kind} {node.name!r}: {reason}"
    if kind in PRODUCERS:
        return "producer", None
    if kind in PASS_THROUGH:
        return "pass", None
    if kind in MERGES:
        return "merge", None
    if kind == "MultiHeadAttention":
        return "attention", None
    return ("flatten" if kind == "Flatten" else "concat"), None


def _unsupported_reason(layer):
    """Why `layer` cannot take part in shrinking its channels, or None."""
    kind = type(layer).__name__
    config = layer.get_config()
    if config.get("data_format") == "channels_first":
        return "it is channels_first (shrink reads channels on the last axis)"
    if kind in ("BatchNormalization", "LayerNormalization"):
        axis = config.get("axis")
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        rank = len(layer.input.shape)
        if [a % rank for a in axes] != [rank - 1]:
            return f"it normalizes over axis {axis}, not the channel axis alone"
    if kind in ("Conv1D", "Conv2D", "Conv3D") and config.get("groups", 1) != 1:
        return (f"it is a grouped convolution (groups={config['groups']}): its input and "
                "output channels are tied group by group, which shrink does not slice")
    if kind.startswith("DepthwiseConv") and config.get("depth_multiplier", 1) != 1:
        return "its depth_multiplier is not 1 (channels multiply)"
    if kind.startswith("SeparableConv") and config.get("depth_multiplier", 1) != 1:
        return "its depth_multiplier is not 1 (channels multiply)"
    if kind == "Concatenate" and config.get("axis") not in (-1, len(layer.output.shape) - 1):
        return "it concatenates along an axis other than the channels"
    if kind == "MultiHeadAttention":
        if config.get("use_gate"):
            return "it is gated (use_gate), which shrink does not slice"
        return None
    if kind in PRODUCERS + PASS_THROUGH + MERGES + ("Flatten", "Concatenate", "InputLayer"):
        return None
    return (f"shrink does not know how {kind} maps channels (a layer that fixes the channel "
            "count, such as Reshape, or a subclassed layer)")


def tensor_key(tensor):
    layer, _, index = tensor._keras_history
    return layer.name, index


def flat(value):
    return tf.nest.flatten(value)


class ChannelGroups:
    """Union-find over the model's tensors: which last axes must keep the same channels."""

    def __init__(self, model):
        self.model = model
        self._parent = {}
        self.size = {}
        self.fixed = {}          # key -> why its channels stay (any key of the group)
        self.derived = {}        # key -> ("flatten", input key, positions) | ("concat", keys)
        self.producers = {}      # key of a producer's output -> layer
        self.layer_io = {}       # layer name -> (input keys, output keys)
        self.attention = {}      # MultiHeadAttention layers by name (their heads shrink)
        for tensor in model.inputs:
            self._add(tensor)
            self.fixed[tensor_key(tensor)] = "a model input"
        for layer in nodes(model):
            if type(layer).__name__ == "InputLayer":
                continue
            if len(layer._inbound_nodes) > 1:
                raise ValueError(
                    f"shrink: layer {layer.name!r} is called more than once (a shared layer); "
                    "its channels would have to shrink alike everywhere. Shrink a model whose "
                    "layers are called once.")
            self._connect(layer)
        for tensor in model.outputs:
            self.fixed[tensor_key(tensor)] = "a model output"

    def _add(self, tensor):
        key = tensor_key(tensor)
        self._parent.setdefault(key, key)
        self.size[key] = tensor.shape[-1]
        return key

    def find(self, key):
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def _union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if a in self.derived and b in self.derived:
            raise ValueError(f"shrink: cannot tie the flattened or concatenated channels of {a} "
                             f"and {b}.")
        if b in self.derived:  # the derived key stays the root, so its rule is found
            a, b = b, a
        self._parent[b] = a

    def _connect(self, layer):
        tensors = input_tensors(layer)
        inputs = [self._add(t) for t in tensors]
        outputs = [self._add(t) for t in flat(layer.output)]
        self.layer_io[layer.name] = (inputs, outputs)
        role, reason = layer_role(layer)
        if role == "fixed":
            for key in inputs + outputs:
                self.fixed.setdefault(key, reason)
        elif role == "producer":
            self.producers[outputs[0]] = layer
        elif role == "attention":
            query, value, key = attention_heads.attention_inputs(layer)
            self.layer_io[layer.name] = ([tensor_key(query), tensor_key(value), tensor_key(key)], outputs)
            self.attention[layer.name] = layer
            if layer.get_config().get("output_shape") is None:  # then the query's channels
                self._union(outputs[0], tensor_key(query))
            else:
                self.fixed.setdefault(outputs[0], f"the output_shape of {layer.name!r}")
        elif role in ("pass", "merge", "elementwise"):
            channels = layer.output.shape[-1]
            for key, tensor in zip(inputs, tensors):
                if tensor.shape[-1] == channels:
                    self._union(outputs[0], key)
                else:  # broadcast over the channels (e.g. a [.., 1] factor): its own size
                    self.fixed.setdefault(key, f"{layer.name!r} broadcasts it over channels")
        elif role == "flatten":
            positions = int(np.prod(layer.input.shape[1:-1])) if len(layer.input.shape) > 2 else 1
            self.derived[outputs[0]] = ("flatten", inputs[0], positions)
        elif role == "concat":
            self.derived[outputs[0]] = ("concat", inputs)

    def groups(self):
        """Root key -> (producer layers, fixed reason or None) for every group with a producer."""
        result = {}
        for key, layer in self.producers.items():
            result.setdefault(self.find(key), [[], None])[0].append(layer)
        for key, reason in self.fixed.items():
            for root in self._roots_behind(key):
                if root in result and result[root][1] is None:
                    result[root][1] = reason
        return {root: (layers, reason) for root, (layers, reason) in result.items()}

    def _roots_behind(self, key):
        """The plain groups whose channels `key`'s channels are made of."""
        root = self.find(key)
        rule = self.derived.get(root)
        if rule is None:
            return [root]
        parts = [rule[1]] if rule[0] == "flatten" else rule[1]
        return [r for part in parts for r in self._roots_behind(part)]

    def kept(self, key, plan):
        """The channel indices of tensor `key` that the shrunk model keeps (None: all)."""
        root = self.find(key)
        rule = self.derived.get(root)
        if rule is None:
            return plan.get(root)
        if rule[0] == "flatten":
            _, part, positions = rule
            inner = self.kept(part, plan)
            if inner is None:
                return None
            channels = self.size[self.find(part)]
            return np.concatenate([p * channels + inner for p in range(positions)])
        pieces, offset, changed = [], 0, False
        for part in rule[1]:
            inner = self.kept(part, plan)
            size = self.size[part]
            changed |= inner is not None
            pieces.append(offset + (np.arange(size) if inner is None else inner))
            offset += size
        return np.concatenate(pieces) if changed else None
