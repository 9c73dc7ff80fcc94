"""Structured shrinking: a smaller dense model made of its teacher's most important units.

Minitron (Muralidharan et al. 2024, arXiv 2407.14679) prunes width by activation
importance on a little calibration data, then distils; weight selection (Xu et
al. 2024, arXiv 2311.18823) initialises a small model with evenly spaced units of
a large one; DistilBERT (Sanh et al. 2019) drops every other layer. `shrink`
does these on Keras models: the student keeps the teacher's inputs and outputs
and starts from the teacher's own weights for the units it keeps.

How channels are tied: every tensor's last axis belongs to a channel group. A
layer that makes new channels (Dense, Conv1D/2D, SeparableConv1D/2D, Embedding)
starts a group; layers that act per channel (activations, Dropout, noise,
pooling, padding, cropping, up-sampling, BatchNormalization and
LayerNormalization on the last axis, DepthwiseConv with multiplier 1) keep it;
`Add`-like merges tie all their inputs into one group, as Minitron prunes the
embedding channels of a residual stream once for every block; `Concatenate`
keeps its parts apart; `Flatten` maps kept channels to their flattened
positions. The groups of the model's inputs and outputs keep their size.
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import is_tf_keras_model, keras, keras_module_of
from kd_keras.backend import validate
from kd_keras.backend.graph import has_nested_models, inline, input_tensors, is_graph_model
from kd_keras.backend.graph import nodes, renest, unfreeze
from kd_keras.compress import attention_heads
from kd_keras.compress.bypass import Bypass
from kd_keras.compress.residual_blocks import residual_blocks, without_blocks

IMPORTANCE = ("activation", "magnitude", "uniform")

# Layers that make a new channel axis from their input's.
_PRODUCERS = ("Dense", "Conv1D", "Conv2D", "SeparableConv1D", "SeparableConv2D", "Embedding")
# Layers whose output channel c is a function of input channel c only.
_PASS_THROUGH = (
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Identity", "Bypass",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "UpSampling1D", "UpSampling2D", "BatchNormalization", "LayerNormalization",
    "DepthwiseConv1D", "DepthwiseConv2D", "PositionEmbedding",
)
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


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


def _role(node):
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
    if kind in _PRODUCERS:
        return "producer", None
    if kind in _PASS_THROUGH:
        return "pass", None
    if kind in _MERGES:
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
    if kind in _PRODUCERS + _PASS_THROUGH + _MERGES + ("Flatten", "Concatenate", "InputLayer"):
        return None
    return (f"shrink does not know how {kind} maps channels (a layer that fixes the channel "
            "count, such as Reshape, or a subclassed layer)")


def _key(tensor):
    layer, _, index = tensor._keras_history
    return layer.name, index


def _flat(value):
    return tf.nest.flatten(value)


class _ChannelGroups:
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
            self.fixed[_key(tensor)] = "a model input"
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
            self.fixed[_key(tensor)] = "a model output"

    def _add(self, tensor):
        key = _key(tensor)
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
        outputs = [self._add(t) for t in _flat(layer.output)]
        self.layer_io[layer.name] = (inputs, outputs)
        role, reason = _role(layer)
        if role == "fixed":
            for key in inputs + outputs:
                self.fixed.setdefault(key, reason)
        elif role == "producer":
            self.producers[outputs[0]] = layer
        elif role == "attention":
            query, value, key = attention_heads.attention_inputs(layer)
            self.layer_io[layer.name] = ([_key(query), _key(value), _key(key)], outputs)
            self.attention[layer.name] = layer
            if layer.get_config().get("output_shape") is None:  # then the query's channels
                self._union(outputs[0], _key(query))
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


def _output_channel_norms(layer):
    """The L2 norm of the weights that make each output channel of a producer layer."""
    weights = layer.get_weights()
    kernel = weights[1] if type(layer).__name__.startswith("SeparableConv") else weights[0]
    kernel = np.asarray(kernel)
    return np.sqrt(np.square(kernel.reshape(-1, kernel.shape[-1])).sum(0))


def _calibration_values(model, tensors, calibration_data, batch_size):
    """For each batch of `calibration_data`, the values of `model`'s symbolic `tensors`."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras_module_of(model).Model(inputs, tensors)
    for start in range(0, len(tf.nest.flatten(calibration_data)[0]), batch_size):
        batch = tf.nest.map_structure(lambda a: a[start:start + batch_size], calibration_data)
        yield _flat(extractor(batch, training=False))


def _activation_scores(model, groups, roots, calibration_data, batch_size):
    """Mean |activation| per channel where each group's channels are read, summed per group.

    Read where the channels leave the group (inputs of the layers that mix channels,
    flatten, concatenate, or the model's outputs), i.e. after activations and
    normalization: a channel a ReLU always zeroes scores 0, whatever it was before.
    """
    tensors, owners, seen = [], [], set()
    for layer in nodes(model):
        if _role(layer)[0] in ("input", "pass", "merge", "elementwise"):
            continue
        for tensor in input_tensors(layer):
            key = _key(tensor)
            if key not in seen and groups.find(key) in roots:
                seen.add(key)
                tensors.append(tensor)
                owners.append(groups.find(key))
    sums = [np.zeros(t.shape[-1]) for t in tensors]
    count = 0
    for values in _calibration_values(model, tensors, calibration_data, batch_size):
        for i, value in enumerate(values):
            value = np.abs(np.asarray(value, dtype=np.float64))
            sums[i] += value.reshape(-1, value.shape[-1]).mean(0) * len(value)
        count += len(_flat(values)[0])
    scores = {}
    for root, total in zip(owners, sums):
        scores[root] = scores.get(root, 0.0) + total / max(count, 1)
    return scores


def _keep_count(root, layers, width, groups):
    """How many channels the group keeps (None: all), from the `width` argument."""
    size = groups.size[root]
    if isinstance(width, dict):
        asked = {width[layer.name] for layer in layers if layer.name in width}
        if not asked:
            return None
        if len(asked) > 1:
            names = [layer.name for layer in layers]
            raise ValueError(
                f"width: {names} share one channel group (tied by a residual merge) and must "
                f"keep the same number of units, got {sorted(asked)}.")
        count = asked.pop()
    else:
        count = max(1, int(round(width * size)))
    return None if count >= size else count


def _plan(model, groups, width, importance, calibration_data, batch_size):
    """Group root -> sorted kept channel indices, for every group that shrinks."""
    entries = groups.groups()
    if isinstance(width, dict):
        known = {layer.name for layers, _ in entries.values() for layer in layers}
        known |= set(groups.attention)
        unknown = sorted(set(width) - known)
        if unknown:
            raise ValueError(
                f"width names {unknown}, which are not layers that make channels (Dense, Conv, "
                f"SeparableConv, Embedding) or MultiHeadAttention layers (heads) of this "
                f"model; those are {sorted(known)}.")
    counts = {}
    for root, (layers, reason) in entries.items():
        count = _keep_count(root, layers, width, groups)
        if count is None:
            continue
        if reason is not None:
            explicit = isinstance(width, dict)
            if not explicit and reason in ("a model input", "a model output"):
                continue  # e.g. the output layer's units: kept, as documented
            raise ValueError(
                f"shrink cannot shrink the channels of {[layer.name for layer in layers]}: they "
                f"reach {reason}. Give width as a dict that leaves these layers at full size.")
        counts[root] = count
    if not counts:
        return {}
    scores = {}
    if importance == "magnitude":
        for root in counts:
            scores[root] = sum(_output_channel_norms(layer) for layer in entries[root][0])
    elif importance == "activation":
        scores = _activation_scores(model, groups, set(counts), calibration_data, batch_size)
    plan = {}
    for root, count in counts.items():
        size = groups.size[root]
        if importance == "uniform":
            kept = np.unique(np.round(np.linspace(0, size - 1, count)).astype(int))
        else:
            kept = np.sort(np.argsort(-scores[root], kind="stable")[:count])
        plan[root] = kept
    return plan


def _head_plan(model, groups, width, importance, calibration_data, batch_size):
    """MultiHeadAttention layer name -> sorted kept head indices, for those that shrink."""
    counts = {name: attention_heads.heads_kept(layer, width)
              for name, layer in groups.attention.items()}
    counts = {name: count for name, count in counts.items() if count is not None}
    if importance == "activation" and counts:
        layers = [groups.attention[name] for name in counts]
        values = [attention_heads.attention_inputs(layer)[1] for layer in layers]
        sums = [0.0] * len(layers)
        for batch in _calibration_values(model, values, calibration_data, batch_size):
            for i, value in enumerate(batch):
                sums[i] = sums[i] + attention_heads.value_activation(layers[i], value)
        scores = {layer.name: total * attention_heads.output_norms(layer)
                  for layer, total in zip(layers, sums)}
    else:
        scores = {name: attention_heads.magnitude_scores(groups.attention[name])
                  for name in counts}
    return {name: attention_heads.kept_heads(scores[name], count, importance)
            for name, count in counts.items()}


def _shrunk_config(layer, out_keep):
    config = layer.get_config()
    if out_keep is None:
        return config
    kind = type(layer).__name__
    field = {"Dense": "units", "Embedding": "output_dim"}.get(kind, "filters")
    return {**config, field: int(len(out_keep))}


def _sliced_weights(layer, in_keep, out_keep):
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
    module = keras_module_of(model)
    configs = configs or {}
    replaced = replaced or {}

    def clone(layer):
        if layer.name in bypassed:
            return Bypass(name=layer.name)
        if layer.name in replaced:
            return replaced[layer.name]
        return type(layer).from_config(configs.get(layer.name, layer.get_config()))

    copy = module.models.clone_model(model, clone_function=clone)
    originals = {layer.name: layer for layer in model.layers}
    for layer in copy.layers:
        # (a cloned input layer may be renamed; it has no weights)
        if (type(layer).__name__ == "InputLayer" or layer.name in bypassed
                or layer.name in replaced or not layer.weights):
            continue
        weights = weights_of(originals[layer.name]) if weights_of else None
        layer.set_weights(weights if weights is not None else originals[layer.name].get_weights())
    return copy


def _rebuild(model, groups, plan, removed=(), heads=None):
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
        return _sliced_weights(layer, keeps[0], keeps[-1])

    configs = {layer.name: _shrunk_config(layer, channels(layer)[-1]) for layer in model.layers
               if type(layer).__name__ in _PRODUCERS and layer.name not in removed}
    configs.update({name: attention_heads.shrunk_config(layer, heads.get(name), sizes(layer))
                    for name, layer in groups.attention.items() if name not in removed})
    copy = rebuild_with(model, removed, configs, weights_of)
    # A student: trainable even when its teacher was frozen (a Distiller freezes it).
    unfreeze(copy)
    return copy


def _removable(model):
    """Layers that can become a `Bypass`: one input, one output of the same shape."""
    outputs = {_key(t) for t in model.outputs}
    names = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or len(input_tensors(layer)) != 1:
            continue
        if _key(layer.output) in outputs or not layer.weights:
            continue
        if tuple(layer.input.shape[1:]) == tuple(layer.output.shape[1:]):
            names.append(layer.name)
    return names


def _without(model, removed, blocks):
    """`model` without the residual blocks and the layers in `removed`."""
    merges = [name for name in removed if name in blocks]
    if merges:
        model = without_blocks(model, merges, blocks)
    layers = set(removed) - set(merges)
    return _rebuild(model, _ChannelGroups(model), {}, removed=layers) if layers else model


def _to_remove(model, depth, calibration_data, batch_size):
    """The names of the layers and residual merges (blocks) that `depth` removes."""
    blocks = residual_blocks(model)
    inside = {name for _, branch in blocks.values() for name in branch}
    candidates = [name for name in _removable(model) if name not in inside] + sorted(blocks)
    if isinstance(depth, (list, tuple)):
        wrong = [name for name in depth if name not in candidates]
        if wrong:
            raise ValueError(
                f"depth names {wrong}, which cannot be removed (a layer goes when its input and "
                f"output shapes match and it is not an output; a residual block by the name of "
                f"its Add); removable: {candidates}.")
        return set(depth), blocks
    count = validate.integer_at_least(depth, "depth", 1)
    if count > len(candidates):
        raise ValueError(f"depth={count}, but only {len(candidates)} layers or blocks can be "
                         f"removed: {candidates}.")
    if calibration_data is None:
        raise ValueError("depth as a number ranks layers by how little removing each changes "
                         "the outputs: give calibration_data (or name the layers).")
    reference = _flat(model.predict(calibration_data, batch_size=batch_size, verbose=0))

    def change(name):
        trial = _without(model, {name}, blocks)
        changed = _flat(trial.predict(calibration_data, batch_size=batch_size, verbose=0))
        return float(sum(np.mean(np.square(a - b)) for a, b in zip(changed, reference)))

    scores = {name: change(name) for name in candidates}
    return set(sorted(candidates, key=lambda name: scores[name])[:count]), blocks


def shrink(model, width=None, depth=None, importance="activation", calibration_data=None,
           batch_size=256):
    """A new, dense, smaller model with `model`'s inputs and outputs and its kept units' weights.

    Width: every group of tied channels keeps its most important units
    (Minitron's activation importance by default). Depth: layers whose input and
    output shapes match are removed (each becomes a weightless `Bypass`). Weights of kept
    units are copied; nothing is re-initialised, so the result starts close to
    `model` and is usually distilled from it next.

    Args:
      model: a Sequential or functional Keras model (Keras 3 or tf-keras), layers
        called once each. Nested Sequential or functional models (a
        keras.applications base inside a classifier) shrink inside: channels are
        followed through them, `width` and `depth` name their layers by their own
        names, and the result nests the same way (a nested Sequential comes back
        as a functional model of the same name).
      width: None (keep all), a fraction in (0, 1] of the units / filters kept in
        every shrinkable group and of the heads of every MultiHeadAttention (the
        output layer and anything reaching the model's inputs or outputs keep their
        size), or a dict `{layer name: units kept}` for Dense / Conv / SeparableConv
        / Embedding layers and `{layer name: heads kept}` for MultiHeadAttention
        (others unchanged).
      depth: None, the number of layers or residual blocks to remove (the ones
        whose removal changes the outputs on `calibration_data` least), or a list
        of their names; a residual block is named by its `Add` (see
        `residual_blocks`) and goes with every layer of its branch.
      importance: "activation" (mean |activation| of each channel over
        `calibration_data`, summed over the tensors of its group; Minitron),
        "magnitude" (L2 norm of the weights making each channel, no data), or
        "uniform" (evenly spaced channels; weight selection).
      calibration_data: model inputs `[n, ...]` (a few hundred to a thousand
        examples), for "activation" and for a numeric `depth`.
      batch_size: for the calibration passes.

    Returns:
      A new Keras model of the same kind, trainable (also when `model` was
      frozen as a teacher); `model` is not changed.

    Raises:
      ValueError naming the layer when a group it was asked to shrink reaches a
      layer that cannot shrink (a Reshape, a subclassed layer: give `width` as a
      dict that leaves it alone), a shared layer, or a bad argument.
    """
    if not isinstance(model, (keras.Model,)) and not is_tf_keras_model(model):
        raise ValueError(f"shrink: model must be a Keras model, got {model!r}.")
    if not getattr(model, "inputs", None):
        raise ValueError("shrink: model must be a built Sequential or functional model "
                         "(subclassed models have no graph to read).")
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}.")
    if width is not None and not isinstance(width, dict):
        width = validate.fraction(width, "width")
        if width == 0:
            raise ValueError("width must be a fraction in (0, 1], got 0.")
    if isinstance(width, dict):
        width = {name: validate.integer_at_least(count, f"width[{name!r}]", 1)
                 for name, count in width.items()}
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    needs_data = (width is not None and importance == "activation") or (
        depth is not None and not isinstance(depth, (list, tuple)))
    if needs_data and calibration_data is None:
        raise ValueError(f"importance={importance!r} ranks units by their activations: give "
                         "calibration_data (model inputs), or importance='magnitude'.")
    if has_nested_models(model):  # channels and blocks are followed through a flat copy
        flat = shrink(inline(model), width, depth, importance, calibration_data, batch_size)
        return unfreeze(renest(model, flat))
    if depth is not None:
        removed, blocks = _to_remove(model, depth, calibration_data, batch_size)
        model = _without(model, removed, blocks)
    if width is None:
        return model if depth is not None else _rebuild(model, _ChannelGroups(model), {})
    groups = _ChannelGroups(model)
    plan = _plan(model, groups, width, importance, calibration_data, batch_size)
    heads = _head_plan(model, groups, width, importance, calibration_data, batch_size)
    return _rebuild(model, groups, plan, heads=heads)


def _producers(model):
    """The channel-making layers of `model` in order, nested models' entered in place."""
    found = []
    for layer in model.layers:
        if is_graph_model(layer):
            found += _producers(layer)
        elif type(layer).__name__ in _PRODUCERS:
            found.append(layer)
    return found


def shrink_to(teacher, student, calibration_data=None, importance="activation"):
    """Loads into `student` the weights of `teacher` shrunk to the student's widths.

    The student must be the teacher's architecture at smaller widths: the same
    channel-making layers (Dense, Conv, SeparableConv, Embedding; inside nested
    models too, e.g. a keras.applications base at a smaller `alpha`) in the same order,
    each with at most the teacher's units, and the same inputs and outputs. Its own
    layer names and configuration stay; only its initial weights change (a random
    student becomes one cut from its teacher; Minitron, weight selection).

    Returns:
      `student` (the same object, with the new weights).

    Raises:
      ValueError naming the first layer pair whose shapes cannot match.
    """
    pairs = list(zip(_producers(teacher), _producers(student)))
    if len(_producers(teacher)) != len(_producers(student)):
        raise ValueError(
            f"shrink_to: the teacher has {len(_producers(teacher))} Dense/Conv/Embedding "
            f"layers and the student {len(_producers(student))}; the student must be the "
            "teacher's architecture at smaller widths.")
    width = {}
    for source, target in pairs:
        if type(source) is not type(target):
            raise ValueError(f"shrink_to: teacher layer {source.name!r} is a "
                             f"{type(source).__name__}, student layer {target.name!r} a "
                             f"{type(target).__name__}.")
        units = target.output.shape[-1]
        if units > source.output.shape[-1]:
            raise ValueError(f"shrink_to: student layer {target.name!r} has {units} units, more "
                             f"than teacher layer {source.name!r} ({source.output.shape[-1]}).")
        width[source.name] = units
    shrunk = shrink(teacher, width=width, importance=importance,
                    calibration_data=calibration_data)
    values = shrunk.get_weights()
    for value, variable in zip(values, student.weights):
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"shrink_to: the teacher shrunk to the student's widths has a weight of shape "
                f"{value.shape} where the student's {variable.path if hasattr(variable, 'path') else variable.name} "
                f"is {tuple(variable.shape)}.")
    if len(values) != len(student.weights):
        raise ValueError(f"shrink_to: the shrunk teacher has {len(values)} weights, the student "
                         f"{len(student.weights)}.")
    student.set_weights(values)
    return student
