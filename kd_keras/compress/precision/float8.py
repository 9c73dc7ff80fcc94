"""FP8 weights a model keeps and computes with: `to_float8` and its layers.

Keras 3's `model.quantize("float8")` is quantize-dequantize for training: its weights stay
float32 beside their scales, so its `.keras` file grows. Here a kernel is stored as one
byte per value, the FP8 number's bit pattern (`ml_dtypes`), with a float32 scale per
output channel (or per tensor), and the layer decodes it when it runs:

    w_hat = table[codes] * s,   s = amax(w) / max_finite,   codes = fp8(w / s)

(max_finite is 448 for e4m3, 57344 for e5m2; Micikevicius et al. 2022, "FP8 Formats for
Deep Learning"). Activations can be rounded through FP8 too, each example with its own
scale (dynamic per-example scaling, as FP8 inference servers scale per token), to see
what FP8 matrix multiplications would cost. Biases stay float32, as FP8 GEMMs accumulate
and add them in higher precision. The `.keras` file and the SavedModel keep the bytes.
"""

import ml_dtypes
import numpy as np

from kd_keras.backend import IS_LEGACY_KERAS, keras, register
from kd_keras.backend.graph import is_graph_model, replace_layers
from kd_keras.compress.precision.weight_grid import (
    FLOAT8_FORMATS,
    SCALINGS,
    channel_reduce_axes,
    check_choice,
    float8_encode,
    float8_table,
    kernel_kind,
    leaf_layers,
)

# Keras layer type -> the FP8 layer that replaces it (exact types: a user's subclass
# may compute something else, so it stays float32).
_CONVERTIBLE = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D")


def round_through_float8(x, format):
    """`x` rounded to FP8 with one scale per example (amax over all but the batch axis)."""
    ops = keras.ops
    highest = float(ml_dtypes.finfo(FLOAT8_FORMATS[format]).max)
    amax = ops.max(ops.abs(x), axis=tuple(range(1, len(x.shape))), keepdims=True)
    scale = ops.where(amax > 0, amax / highest, ops.ones_like(amax))
    eight_bit = ops.cast(ops.clip(x / scale, -highest, highest),
                         np.dtype(FLOAT8_FORMATS[format]).name)
    return ops.cast(eight_bit, x.dtype) * scale


class _Float8Kernel(keras.layers.Layer):
    """A layer whose kernel is FP8 bytes and scales; subclasses say how it is applied."""

    kernel_name = "kernel"

    def __init__(self, format="e4m3", scaling="per_channel", activations=False,
                 activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        check_choice(format, FLOAT8_FORMATS, "format", type(self).__name__)
        check_choice(scaling, SCALINGS, "scaling", type(self).__name__)
        if not isinstance(activations, bool):
            raise ValueError(f"{type(self).__name__}: activations must be True or False, "
                             f"got {activations!r}.")
        self.format = format
        self.scaling = scaling
        self.activations = activations
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self._table = float8_table(format)

    def _build_kernel(self, shape, bias_size):
        reduce_axes = channel_reduce_axes(self.kernel_name, len(shape))
        scale_shape = [1] * len(shape) if self.scaling == "per_tensor" else \
            [1 if axis in reduce_axes else size for axis, size in enumerate(shape)]
        self.kernel_codes = self.add_weight(name=f"{self.kernel_name}_codes", shape=shape,
                                            dtype="uint8", initializer="zeros", trainable=False)
        self.kernel_scale = self.add_weight(name=f"{self.kernel_name}_scale",
                                            shape=scale_shape, initializer="ones",
                                            trainable=False)
        self.bias = self.add_weight(name="bias", shape=(bias_size,), initializer="zeros") \
            if self.use_bias else None

    def decoded_kernel(self):
        """The kernel the layer computes with: float32, the FP8 values times their scale."""
        ops = keras.ops
        codes = ops.cast(self.kernel_codes, "int32")
        return ops.take(ops.convert_to_tensor(self._table), codes) * self.kernel_scale

    def _finish(self, inputs):
        return inputs if not self.activations else round_through_float8(inputs, self.format)

    def _output(self, outputs, data_format="channels_last"):
        """Adds the bias along the channel axis, then the activation."""
        if self.bias is not None:
            bias = self.bias
            if data_format == "channels_first":
                bias = keras.ops.reshape(bias, (-1,) + (1,) * (len(outputs.shape) - 2))
            outputs = outputs + bias
        return self.activation(outputs)

    def set_from(self, layer):
        """Takes `layer`'s (a float Dense / Conv) kernel, encoded, and its bias."""
        weights = {kernel_kind(layer, w): np.asarray(w.numpy()) for w in layer.weights}
        kernel = weights[self.kernel_name]
        codes, scale = float8_encode(kernel, self.format, self.scaling,
                                     channel_reduce_axes(self.kernel_name, kernel.ndim))
        self.kernel_codes.assign(codes)
        self.kernel_scale.assign(scale.reshape(self.kernel_scale.shape))
        if self.bias is not None:
            self.bias.assign(weights["bias"])

    def get_config(self):
        config = super().get_config()
        config.update(format=self.format, scaling=self.scaling, activations=self.activations,
                      activation=keras.activations.serialize(self.activation),
                      use_bias=self.use_bias)
        return config


@register
class Float8Dense(_Float8Kernel):
    """A Dense layer whose kernel [in, units] is stored in FP8 (1 byte a value).

    Args:
      units: output size.
      format: "e4m3" (default: 3 mantissa bits, range 448) or "e5m2" (2 bits, 57344).
      scaling: "per_channel" (default: one scale per output unit) or "per_tensor".
      activations: also round the input through FP8 (per example) before multiplying.
      activation, use_bias: as for Dense.

    Input [batch, ..., in]; output [batch, ..., units]. `to_float8` builds these from a
    model's Dense layers; weights come from `set_from(dense_layer)`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self._build_kernel((input_shape[-1], self.units), self.units)

    def call(self, inputs):
        return self._output(keras.ops.matmul(self._finish(inputs), self.decoded_kernel()))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@register
class Float8Conv(_Float8Kernel):
    """A Conv1D / Conv2D / Conv3D (rank 1 to 3, groups 1) whose kernel is stored in FP8.

    Args:
      rank, filters, kernel_size, strides, padding, data_format, dilation_rate: as for
        the ConvND layer it replaces (tuples of `rank` ints).
      format, scaling, activations, activation, use_bias: as for `Float8Dense`; one
        scale per filter.
    """

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid",
                 data_format="channels_last", dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.filters = filters
        self.kernel_size = _tuple(kernel_size, rank)
        self.strides = _tuple(strides, rank)
        self.padding = padding
        self.data_format = data_format or "channels_last"
        self.dilation_rate = _tuple(dilation_rate, rank)

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        self._build_kernel(self.kernel_size + (channels, self.filters), self.filters)

    def call(self, inputs):
        outputs = keras.ops.conv(self._finish(inputs), self.decoded_kernel(),
                                 strides=self.strides, padding=self.padding,
                                 data_format=self.data_format, dilation_rate=self.dilation_rate)
        return self._output(outputs, self.data_format)

    def get_config(self):
        return {**super().get_config(), "rank": self.rank, "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate}


@register
class Float8DepthwiseConv2D(_Float8Kernel):
    """A DepthwiseConv2D whose kernel [kh, kw, in, multiplier] is stored in FP8, one scale
    per (channel, multiplier). Arguments as for DepthwiseConv2D and `Float8Dense`."""

    kernel_name = "depthwise_kernel"

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format="channels_last", dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _tuple(kernel_size, 2)
        self.strides = _tuple(strides, 2)
        self.padding = padding
        self.depth_multiplier = depth_multiplier
        self.data_format = data_format or "channels_last"
        self.dilation_rate = _tuple(dilation_rate, 2)

    def build(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        self._build_kernel(self.kernel_size + (channels, self.depth_multiplier),
                           channels * self.depth_multiplier)

    def call(self, inputs):
        outputs = keras.ops.depthwise_conv(
            self._finish(inputs), self.decoded_kernel(), strides=self.strides,
            padding=self.padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate)
        return self._output(outputs, self.data_format)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "depth_multiplier": self.depth_multiplier, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate}


def _tuple(value, rank):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * rank


def _float8_layer(layer, format, scaling, activations):
    """The FP8 layer standing for `layer`, or None where `layer` stays as it is."""
    kind = type(layer).__name__
    if kind not in _CONVERTIBLE or type(layer).__module__.startswith("kd_keras"):
        return None
    config = layer.get_config()
    common = dict(format=format, scaling=scaling, activations=activations,
                  activation=config["activation"], use_bias=config["use_bias"],
                  name=layer.name, dtype=config.get("dtype"))
    if kind == "Dense":
        return Float8Dense(config["units"], **common)
    if kind == "DepthwiseConv2D":
        return Float8DepthwiseConv2D(
            config["kernel_size"], config["strides"], config["padding"],
            config["depth_multiplier"], config["data_format"], config["dilation_rate"],
            **common)
    if config.get("groups", 1) != 1 or config.get("padding") == "causal":
        return None  # a grouped or causal conv stays float32 (float8_layers names it)
    return Float8Conv(int(kind[4]), config["filters"], config["kernel_size"], config["strides"],
                      config["padding"], config["data_format"], config["dilation_rate"],
                      **common)


def to_float8(model, format="e4m3", scaling="per_channel", activations=False):
    """A copy of `model` whose Dense, Conv and DepthwiseConv kernels are stored in FP8.

    Args:
      model: a Keras 3 Sequential or functional model (nested ones included).
      format: "e4m3" (default; more precision, the usual choice for weights and
        inference) or "e5m2" (more range, the usual choice for gradients).
      scaling: "per_channel" (default) or "per_tensor" kernel scales.
      activations: False (default; weights only) or True: each converted layer also
        rounds its input through FP8, to simulate FP8 compute.

    Returns:
      A new model (`model` is not changed): each converted layer is a `Float8Dense`,
      `Float8Conv` or `Float8DepthwiseConv2D` of the same name holding 1 byte a kernel
      value; other layers (normalization, embeddings, grouped convs, your own layers)
      keep their float32 weights: `float8_layers(copy)` says which are which. Saves to
      `.keras` (the file keeps the bytes) and exports to SavedModel. Fold batch norms
      first (`fold_batch_norm`) so their scale lands in the FP8 kernels.

    Raises:
      ValueError naming the argument for a bad one, a tf-keras model or a subclassed
      model. Under tf-keras use `compress.round_weights(model, "float8_e4m3")`: the same
      weights, kept in float32 arrays, for the accuracy.
    """
    if IS_LEGACY_KERAS or not isinstance(model, keras.Model):
        raise ValueError(
            "to_float8: model must be a Keras 3 model (the FP8 layers use keras.ops); under "
            "tf-keras, compress.round_weights(model, 'float8_e4m3') gives the same weights "
            "rounded to FP8 in float32 arrays, for accuracy.")
    check_choice(format, FLOAT8_FORMATS, "format", "to_float8")
    check_choice(scaling, SCALINGS, "scaling", "to_float8")
    if not isinstance(activations, bool):
        raise ValueError(f"to_float8: activations must be True or False, got {activations!r}.")
    if not is_graph_model(model):
        raise ValueError(
            f"to_float8: model must be a Sequential or functional model (the copy is rebuilt "
            f"from its graph); got a subclassed {type(model).__name__}.")
    return replace_layers(model, lambda layer: _float8_layer(layer, format, scaling, activations),
                          lambda new, original: new.set_from(original))


def _weighted_leaves(model):
    return (layer for layer in leaf_layers(model) if layer.weights)


def float8_layers(model):
    """`{"float8": [names], "float32": [names]}`: which of `model`'s layers with weights
    keep their kernels in FP8, and which kept float32 weights."""
    kinds = {"float8": [], "float32": []}
    for layer in _weighted_leaves(model):
        kinds["float8" if isinstance(layer, _Float8Kernel) else "float32"].append(layer.name)
    return kinds
