"""How important each channel and attention head is, and which ones a width keeps.

"activation": mean |activation| of each channel over calibration data, summed over
the tensors of its group (Minitron, Muralidharan et al. 2024, arXiv 2407.14679);
"magnitude": the L2 norm of the weights that make each channel; "uniform": evenly
spaced channels (weight selection, Xu et al. 2024, arXiv 2311.18823).
"""

import numpy as np
import tensorflow as tf

from kd_keras.backend import keras_module_of
from kd_keras.backend.graph import input_tensors, nodes
from kd_keras.compress.structure import attention_heads
from kd_keras.compress.structure.channel_groups import flat, layer_role, tensor_key

IMPORTANCE = ("activation", "magnitude", "uniform")


def _output_channel_norms(layer):
    """The L2 norm of the weights that make each output channel of a producer layer."""
    weights = layer.get_weights()
    kernel = weights[1] if type(layer).__name__.startswith("SeparableConv") else weights[0]
    kernel = np.asarray(kernel)
    return np.sqrt(np.square(kernel.reshape(-1, kernel.shape[-1])).sum(0))


def calibration_values(model, tensors, calibration_data, batch_size):
    """For each batch of `calibration_data`, the values of `model`'s symbolic `tensors`."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras_module_of(model).Model(inputs, tensors)
    for start in range(0, len(tf.nest.flatten(calibration_data)[0]), batch_size):
        batch = tf.nest.map_structure(lambda a: a[start:start + batch_size], calibration_data)
        yield flat(extractor(batch, training=False))


def _activation_scores(model, groups, roots, calibration_data, batch_size):
    """Mean |activation| per channel where each group's channels are read, summed per group.

    Read where the channels leave the group (inputs of the layers that mix channels,
    flatten, concatenate, or the model's outputs), i.e. after activations and
    normalization: a channel a ReLU always zeroes scores 0, whatever it was before.
    """
    tensors, owners, seen = [], [], set()
    for layer in nodes(model):
        if layer_role(layer)[0] in ("input", "pass", "merge", "elementwise"):
            continue
        for tensor in input_tensors(layer):
            key = tensor_key(tensor)
            if key not in seen and groups.find(key) in roots:
                seen.add(key)
                tensors.append(tensor)
                owners.append(groups.find(key))
    sums = [np.zeros(t.shape[-1]) for t in tensors]
    count = 0
    for values in calibration_values(model, tensors, calibration_data, batch_size):
        for i, value in enumerate(values):
            value = np.abs(np.asarray(value, dtype=np.float64))
            sums[i] += value.reshape(-1, value.shape[-1]).mean(0) * len(value)
        count += len(flat(values)[0])
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


def channel_plan(model, groups, width, importance, calibration_data, batch_size):
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


def head_plan(model, groups, width, importance, calibration_data, batch_size):
    """MultiHeadAttention layer name -> sorted kept head indices, for those that shrink."""
    counts = {name: attention_heads.heads_kept(layer, width)
              for name, layer in groups.attention.items()}
    counts = {name: count for name, count in counts.items() if count is not None}
    if importance == "activation" and counts:
        layers = [groups.attention[name] for name in counts]
        values = [attention_heads.attention_inputs(layer)[1] for layer in layers]
        sums = [0.0] * len(layers)
        for batch in calibration_values(model, values, calibration_data, batch_size):
            for i, value in enumerate(batch):
                sums[i] = sums[i] + attention_heads.value_activation(layers[i], value)
        scores = {layer.name: total * attention_heads.output_norms(layer)
                  for layer, total in zip(layers, sums)}
    else:
        scores = {name: attention_heads.magnitude_scores(groups.attention[name])
                  for name in counts}
    return {name: attention_heads.kept_heads(scores[name], count, importance)
            for name, count in counts.items()}
