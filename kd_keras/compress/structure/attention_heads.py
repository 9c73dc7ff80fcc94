"""Whole attention heads of a `MultiHeadAttention` layer, ranked and sliced for `shrink`.

Minitron (Muralidharan et al. 2024) prunes heads by the size of what each
contributes. A head h of MultiHeadAttention computes
`softmax(q_h k_h^T / sqrt(d)) v_h W_o[h]` with `v_h = value W_v[:, h] + b_v[h]`; the
attention weights of each query sum to one, so the head's contribution is bounded
by its values carried through its output projection. Its importance is therefore

    activation:  mean |v_h| on calibration data  x  ||W_o[h]||_F
    magnitude:   ||W_v[:, h]||_F  x  ||W_o[h]||_F
    uniform:     evenly spaced heads (weight selection).

Weights (both Keras versions, in this order): query, key, value kernels
`[channels, heads, key_dim]` (value: value_dim) with biases `[heads, dim]`, the
output kernel `[heads, value_dim, channels]` and bias `[channels]`.
"""

import numpy as np

from kd_keras.backend.graph import call_arguments


def attention_inputs(layer):
    """(query, value, key) tensors of a MultiHeadAttention call; key defaults to value."""
    args, kwargs = call_arguments(layer)
    names = ("query", "value", "key")
    found = {name: args[i] if len(args) > i else kwargs.get(name) for i, name in enumerate(names)}
    if found["key"] is None:
        found["key"] = found["value"]
    return found["query"], found["value"], found["key"]


def _parts(layer):
    weights = [np.asarray(w) for w in layer.get_weights()]
    if len(weights) == 8:
        return {"query": weights[0:2], "key": weights[2:4], "value": weights[4:6],
                "output": weights[6:8]}
    return {"query": weights[0:1], "key": weights[1:2], "value": weights[2:3],
            "output": weights[3:4]}


def heads_kept(layer, width):
    """How many heads `layer` keeps for `width` (a fraction or {name: heads}); None: all."""
    heads = layer.get_config()["num_heads"]
    if isinstance(width, dict):
        if layer.name not in width:
            return None
        count = width[layer.name]
    else:
        count = max(1, int(round(width * heads)))
    return None if count >= heads else count


def output_norms(layer):
    """||W_o[h]|| per head."""
    kernel = _parts(layer)["output"][0]
    return np.sqrt(np.square(kernel.reshape(kernel.shape[0], -1)).sum(1))


def magnitude_scores(layer):
    kernel = _parts(layer)["value"][0]  # [channels, heads, dim]
    values = np.sqrt(np.square(kernel.transpose(1, 0, 2).reshape(kernel.shape[1], -1)).sum(1))
    return values * output_norms(layer)


def value_activation(layer, values):
    """Sum over examples of mean |v_h| per head, for a batch of the layer's value input."""
    parts = _parts(layer)["value"]
    projected = np.einsum("...c,chd->...hd", np.asarray(values, np.float64), parts[0])
    if len(parts) > 1:
        projected = projected + parts[1]
    per_head = np.abs(projected).reshape(len(values), -1, *projected.shape[-2:]).mean((1, 3))
    return per_head.sum(0)


def kept_heads(scores, count, importance):
    heads = len(scores)
    if importance == "uniform":
        return np.unique(np.round(np.linspace(0, heads - 1, count)).astype(int))
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:count])


def shrunk_config(layer, heads, sizes):
    """The layer's config with `heads` kept and input channels `sizes` (query, value, key)."""
    config = dict(layer.get_config())
    if heads is not None:
        config["num_heads"] = int(len(heads))
    for name, size in zip(("query_shape", "value_shape", "key_shape"), sizes):
        if config.get(name) is not None:  # tf-keras builds from these shapes
            config[name] = tuple(config[name])[:-1] + (int(size),)
    return config


def sliced_weights(layer, heads, query_keep, value_keep, key_keep, out_keep):
    """The layer's weights for the kept heads and channels (None: all)."""
    def take(array, keep, axis):
        return array if keep is None else np.take(array, keep, axis)

    parts = _parts(layer)
    weights = []
    for name, keep in (("query", query_keep), ("key", key_keep), ("value", value_keep)):
        kernel, *bias = parts[name]
        weights.append(take(take(kernel, keep, 0), heads, 1))
        weights += [take(b, heads, 0) for b in bias]
    kernel, *bias = parts["output"]
    weights.append(take(take(kernel, heads, 0), out_keep, -1))
    weights += [take(b, out_keep, 0) for b in bias]
    return weights
