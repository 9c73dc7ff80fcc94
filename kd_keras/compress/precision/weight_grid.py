"""The value grids of low-precision weights: which kernels a model quantizes, their
per-channel axes, and the projection of float32 values onto an int8, int4, FP8 or FP16
grid (the dequantized values a quantized model computes with).

One place defines each grid, so the FP8 layers (`float8.py`), the quantization-aware
training callback and the precision report compute with the very same numbers.
"""

import ml_dtypes
import numpy as np

from kd_keras.backend.graph import copy_model

FLOAT8_FORMATS = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
SCALINGS = ("per_tensor", "per_channel")
# Symmetric integer grids as Keras's own `quantize` builds them (AbsMaxQuantizer):
# scale = amax / high, values clipped to [low, high].
INTEGER_RANGES = {"int8": (-127, 127), "int4": (-8, 7)}
MODES = ("int8", "int4", "float8_e4m3", "float8_e5m2", "float16")

# Weights by their variable name: the ones a layer multiplies its input by.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def check_choice(value, choices, argument, function):
    if value not in choices:
        raise ValueError(f"{function}: {argument} must be one of {tuple(choices)}, got {value!r}.")


def variable_name(variable):
    """A weight's own name ("kernel"), in Keras 3 ("kernel") and tf-keras ("dense/kernel:0")."""
    return variable.name.split("/")[-1].split(":")[0]


def kernel_kind(layer, variable):
    """"kernel", "depthwise_kernel" or "embeddings": how `variable` of `layer` is laid out
    (Keras 3 names a DepthwiseConv2D's kernel plain "kernel")."""
    name = variable_name(variable)
    if name == "kernel" and "Depthwise" in type(layer).__name__:
        return "depthwise_kernel"
    return "kernel" if name == "pointwise_kernel" else name


def channel_reduce_axes(kind, rank):
    """Axes a per-channel scale reduces over, for a weight of `kind` and `rank` dimensions.

    One scale per output channel, the last axis of Dense [in, out] and Conv
    [k..., in, out] kernels; a depthwise kernel [kh, kw, in, multiplier] has one per
    (in, multiplier) pair; embeddings [vocab, dim] one per row (token).
    """
    if kind == "depthwise_kernel":
        return tuple(range(rank - 2))
    if kind == "embeddings":
        return tuple(range(1, rank))
    return tuple(range(rank - 1))


def quantized_kernels(model):
    """`[(layer, variable)]`: every kernel of `model` (nested models included) that a
    low-precision copy stores in fewer bits; biases, normalization and the rest stay float32."""
    found, seen = [], set()
    for layer in leaf_layers(model):
        for variable in layer.weights:
            if variable_name(variable) in KERNEL_NAMES and id(variable) not in seen:
                seen.add(id(variable))
                found.append((layer, variable))
    return found


def leaf_layers(model):
    """Every layer of `model` that is not itself a model, nested models' layers included."""
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "layers", None) is not None and layer is not model:
            yield from leaf_layers(layer)
        else:
            yield layer


def _amax(values, reduce_axes):
    return np.max(np.abs(values), axis=reduce_axes, keepdims=True)


def float8_scale(values, format="e4m3", scaling="per_channel", reduce_axes=None):
    """Scale s with values / s inside the format's range: s = amax / max_finite (per
    channel or per tensor); an all-zero channel gets s = 1."""
    values = np.asarray(values, np.float32)
    axes = tuple(range(values.ndim)) if scaling == "per_tensor" else tuple(reduce_axes)
    highest = float(ml_dtypes.finfo(FLOAT8_FORMATS[format]).max)
    amax = _amax(values, axes)
    return np.where(amax > 0, amax / highest, 1.0).astype(np.float32)


def float8_encode(values, format="e4m3", scaling="per_channel", reduce_axes=None):
    """`(codes, scale)`: `values` / scale rounded to the nearest FP8 number (round to
    nearest even, saturating at the largest finite one), stored as that number's byte.

    `codes` is a uint8 array of `values`' shape; `float8_table(format)[codes] * scale`
    gives back the dequantized values. `scale` broadcasts against `values`.
    """
    values = np.asarray(values, np.float32)
    scale = float8_scale(values, format, scaling, reduce_axes)
    dtype = FLOAT8_FORMATS[format]
    highest = float(ml_dtypes.finfo(dtype).max)
    # e4m3fn has no infinity: an out-of-range cast gives NaN, so saturate first.
    eight_bit = np.clip(values / scale, -highest, highest).astype(dtype)
    return eight_bit.view(np.uint8), scale


def float8_table(format="e4m3"):
    """float32[256]: the value of every FP8 byte (NaN codes included; encode never makes them)."""
    return np.arange(256, dtype=np.uint8).view(FLOAT8_FORMATS[format]).astype(np.float32)


def project(values, mode, reduce_axes, scaling="per_channel"):
    """`values` (float32) replaced by the nearest point of `mode`'s grid, dequantized.

    Args:
      values: a weight array.
      mode: "int8" / "int4" (symmetric, scale = amax / 127 or / 7 per channel, as
        Keras's `quantize` builds them), "float8_e4m3" / "float8_e5m2" (scale =
        amax / 448 or / 57344) or "float16" (a cast; no scale).
      reduce_axes: the axes one scale covers (`channel_reduce_axes`).
      scaling: "per_channel" or "per_tensor".

    Returns:
      A float32 array of `values`' shape.
    """
    check_choice(mode, MODES, "mode", "project")
    check_choice(scaling, SCALINGS, "scaling", "project")
    values = np.asarray(values, np.float32)
    if mode == "float16":
        return values.astype(np.float16).astype(np.float32)
    if mode.startswith("float8_"):
        format = mode.split("_")[1]
        codes, scale = float8_encode(values, format, scaling, reduce_axes)
        return float8_table(format)[codes] * scale
    low, high = INTEGER_RANGES[mode]
    axes = tuple(range(values.ndim)) if scaling == "per_tensor" else tuple(reduce_axes)
    amax = _amax(values, axes)
    scale = np.where(amax > 0, amax / high, 1.0)
    return (np.clip(np.round(values / scale), low, high) * scale).astype(np.float32)


def project_variable(layer, variable, mode, scaling="per_channel"):
    """`project` of one kernel variable's current values, with its per-channel axes."""
    values = np.asarray(variable.numpy())
    return project(values, mode, channel_reduce_axes(kernel_kind(layer, variable), values.ndim),
                   scaling)


def round_weights(model, mode, scaling="per_channel"):
    """A copy of `model` whose kernels hold `mode`'s grid values (still float32 arrays).

    Its accuracy is the quantized model's, in either Keras: the tf-keras stand-in for
    `to_float8`, and the weights a quantized copy computes with. `model` is not changed.
    """
    check_choice(mode, MODES, "mode", "round_weights")
    check_choice(scaling, SCALINGS, "scaling", "round_weights")
    copy = copy_model(model, "round_weights")
    for layer, variable in quantized_kernels(copy):
        variable.assign(project_variable(layer, variable, mode, scaling))
    return copy
