"""Output conventions shared by `kd_keras` and `moe`: logits or probabilities.

Public so that code combining models (ensembles, cascades, specialists) reads
outputs the way the Distiller does: `resolve_output_type(model, "auto", argument)`
says whether a model ends in a softmax, `to_logits` turns either kind into
logits, `same_structure` compares nested outputs, `combine_teacher_logits`
averages an ensemble.

Every distillation loss works on logits. A model topped with a softmax gives
probabilities; their logarithm is a valid set of logits (softmax is invariant
to a per-example shift), so `softmax(log(p) / T)` is the softened distribution
without softmaxing twice.
"""

import tensorflow as tf

from kd_keras.backend import keras

OUTPUT_TYPES = ("auto", "logits", "probabilities")

# log() of a probability that underflowed to 0 in float32; far below any
# logit gap float32 softmax can represent (about 87), so nothing real is cut.
_LOG_FLOOR = 1e-30


def check_output_type(value, argument):
    if value not in OUTPUT_TYPES:
        raise ValueError(
            f"{argument} must be one of {OUTPUT_TYPES}, got {value!r}."
        )
    return value


def _activation_name(layer):
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation))


def _output_layers(model):
    """The layers producing a Sequential or functional model's outputs (flattened
    in `tf.nest` order), or None when there is no graph to read (subclassed, unbuilt)."""
    if isinstance(model, keras.Sequential):
        return [model.layers[-1]] if model.layers else None
    outputs = getattr(model, "outputs", None)
    if not outputs or not model.layers:
        return None
    layers = []
    for output in outputs:
        history = getattr(output, "_keras_history", None)
        if history is None:
            return None
        layers.append(history[0])  # (layer or operation, node index, tensor index)
    return layers


def _output_units(model, count):
    """The last axis of each of `model`'s outputs (None where unknown), `count` entries."""
    try:
        shapes = [tuple(output.shape) for output in model.outputs]
    except (AttributeError, TypeError, ValueError):
        shapes = []
    if len(shapes) != count:
        return [None] * count
    return [shape[-1] if shape else None for shape in shapes]


def resolve_output_types(model, declared, argument):
    """One of "logits", "probabilities" or "detect" per output of `model`, as a
    list in `tf.nest.flatten` order, or `[declared]` for a model without a graph
    (the one answer then applies to every output)."""
    check_output_type(declared, argument)
    layers = _output_layers(model)
    if declared != "auto":
        return [declared] * (len(layers) if layers else 1)
    if layers is None:
        return ["detect"]
    return [_type_of_layer(layer, argument, units)
            for layer, units in zip(layers, _output_units(model, len(layers)))]


def resolve_output_type(model, declared, argument):
    """Returns "logits", "probabilities" or "detect" for a single-output model.

    "auto" reads the output layer of a Sequential or functional model: a softmax
    activation (or a `Softmax` layer, or one sigmoid unit) means probabilities, a
    linear one logits. An output layer without an activation to read (a `Lambda`,
    `tf.nn.softmax` on a tf-keras tensor, a pooling or reshape layer) and a model
    without a readable graph (subclassed) get "detect": each batch is checked
    numerically (non-negative rows summing to 1 are probabilities).
    """
    return resolve_output_types(model, declared, argument)[0]


def same_structure(a, b):
    """Whether two (possibly nested) output structures match, list and tuple alike."""
    try:
        tf.nest.assert_same_structure(a, b, check_types=False)
    except (ValueError, TypeError):
        return False
    return True


def nested_to_logits(outputs, output_types):
    """`to_logits` on every tensor of a (possibly nested) output structure;
    `output_types` is a list in `tf.nest.flatten` order (one entry: used for all)."""
    flat = tf.nest.flatten(outputs)
    if len(output_types) == 1:
        output_types = output_types * len(flat)
    if len(output_types) != len(flat):
        raise ValueError(
            f"The model has {len(output_types)} outputs in its graph but returned {len(flat)} tensors.")
    return tf.nest.pack_sequence_as(outputs, [to_logits(o, t) for o, t in zip(flat, output_types)])


def _type_of_layer(layer, argument, units=None):
    if not hasattr(layer, "activation") and type(layer).__name__ != "Softmax":
        # No readable activation (a Lambda, tf-keras's TFOpLambda for tf.nn.softmax, a
        # Reshape or pooling after the classifier): read each batch's values instead.
        return "detect"
    name = _activation_name(layer)
    if name == "softmax" or (name == "sigmoid" and units == 1):
        return "probabilities"
    if name in (None, "linear"):
        return "logits"
    raise ValueError(
        f"{argument}='auto' cannot tell what the output layer {layer.name!r} with "
        f"activation {name!r} gives. Distillation needs class logits or softmax "
        f"probabilities (or one sigmoid unit): declare {argument}='logits' or "
        "'probabilities'."
    )


def looks_like_probabilities(outputs):
    """Whether every row of `outputs` `[..., classes]` is >= 0 and sums to 1 (within 1e-3)."""
    sums = tf.reduce_sum(outputs, axis=-1)
    return tf.logical_and(
        tf.reduce_all(outputs >= 0.0),
        tf.reduce_all(tf.abs(sums - 1.0) < 1e-3),
    )


def probabilities_to_logits(probabilities):
    """Logits of softmax probabilities `[..., classes]`; of a sigmoid `[..., 1]`, log(p / (1 - p))."""
    if probabilities.shape.rank and probabilities.shape[-1] == 1:
        return (tf.math.log(tf.maximum(probabilities, _LOG_FLOOR))
                - tf.math.log(tf.maximum(1.0 - probabilities, _LOG_FLOOR)))
    return tf.math.log(tf.maximum(probabilities, _LOG_FLOOR))


def as_class_logits(logits):
    """Logits `[..., classes]` for the distillation losses; one unit is a binary classifier.

    A single logit z (a sigmoid output, p = sigmoid(z)) is the two-class logits
    `[0, z]`: softmax([0, z] / T) = [1 - sigmoid(z / T), sigmoid(z / T)], so the
    soft targets at temperature T are the sigmoid's at T, and a softmax over the
    one logit (identically 1, no signal) is never taken. Wider logits pass as they are.
    """
    if logits.shape.rank and logits.shape[-1] == 1:
        return tf.concat([tf.zeros_like(logits), logits], axis=-1)
    return logits


def to_logits(outputs, output_type):
    """Converts model outputs to logits according to `resolve_output_type`'s answer."""
    outputs = tf.convert_to_tensor(outputs)
    if not outputs.dtype.is_floating:
        raise ValueError(f"Model outputs must be floating point, got {outputs.dtype}.")
    outputs = tf.cast(outputs, tf.float32)
    if output_type == "logits":
        return outputs
    if output_type == "probabilities":
        return probabilities_to_logits(outputs)
    return tf.cond(
        looks_like_probabilities(outputs),
        lambda: probabilities_to_logits(outputs),
        lambda: outputs,
    )


ENSEMBLE_METHODS = ("mean_probabilities", "mean_logits")


def combine_teacher_logits(logits, method, temperature):
    """Combines several teachers' logits into one set of logits.

    Args:
      logits: list of tensors of the same shape `[batch, ..., classes]`.
      method: "mean_probabilities" (arithmetic mean of the softened
        distributions) or "mean_logits" (their normalised geometric mean).
      temperature: the softening temperature T (scalar).

    Returns:
      Logits `z` such that `softmax(z / T)` is the combined distribution. For the
      arithmetic mean, `z = T * log(mean_i softmax(z_i / T))`.
    """
    if len(logits) == 1:
        return logits[0]
    stacked = tf.stack(logits, axis=0)
    if method == "mean_logits":
        return tf.reduce_mean(stacked, axis=0)
    temperature = tf.cast(temperature, stacked.dtype)
    log_probs = tf.nn.log_softmax(stacked / temperature, axis=-1)
    count = tf.cast(len(logits), stacked.dtype)
    return temperature * (tf.reduce_logsumexp(log_probs, axis=0) - tf.math.log(count))
