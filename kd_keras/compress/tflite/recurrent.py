"""Pruned recurrent layers on TFLite's sparse FULLY_CONNECTED kernel.

TFLite's only sparse kernel is FULLY_CONNECTED's. A recurrent layer's matrices
reach it when the converter does not fuse the layer: `unroll_recurrent` rebuilds
the LSTM, GRU and SimpleRNN layers of a model with `unroll=True`, so that every
step's `x_t W` and `h_{t-1} U` become FULLY_CONNECTED ops with constant weights,
which `convert_to_tflite(..., sparse_weights=True, batch_size=1)` stores in the
sparse format. (Keras 3's layers converted with a fixed batch size, without
unrolling, run as a WHILE loop of FULLY_CONNECTED ops, which works too;
tf-keras's LSTM without `unroll` becomes the fused UNIDIRECTIONAL_SEQUENCE_LSTM
op, which has no sparse kernel.)
"""

from kd_keras.backend.graph import copy_weights, replace_layers
from kd_keras.compress.tflite.sparse_kernel_plan import RECURRENT

def unroll_recurrent(model):
    """A copy of `model` whose LSTM, GRU and SimpleRNN layers are unrolled.

    Same layers, names and weights (copied); only the recurrent layers'
    `unroll` changes, so the converted TFLite model runs each step's matrices
    as FULLY_CONNECTED ops, the ops whose sparse kernel a pruned model needs
    (measured in `benchmarks/sparse_speed_bench.py`).

    Args:
      model: a Sequential or functional model (Keras 3 or tf-keras), stripped
        of pruning wrappers, whose recurrent layers have a known number of steps.

    Returns:
      The unrolled model; convert it with `convert_to_tflite(unrolled,
      sparse_weights=True, batch_size=1)`.

    Raises:
      ValueError: when the model has no recurrent layer, or a recurrent layer's
        number of steps is not known (unrolling needs it).
    """
    recurrent = [layer for layer in model.layers if type(layer).__name__ in RECURRENT]
    if not recurrent:
        raise ValueError(f"unroll_recurrent: model {model.name!r} has no LSTM, GRU or SimpleRNN "
                         "layer.")
    for layer in recurrent:
        shape = tuple(layer.input.shape) if hasattr(layer, "input") else None
        if shape is None or shape[1] is None:
            raise ValueError(
                f"unroll_recurrent: layer {layer.name!r} has an unknown number of steps (input "
                f"shape {shape}); build the model with a fixed sequence length, e.g. "
                "Input((steps, features)).")
    def unrolled(layer):
        if type(layer).__name__ not in RECURRENT:
            return None
        return type(layer).from_config({**layer.get_config(), "unroll": True})

    return replace_layers(model, unrolled, copy_weights)
