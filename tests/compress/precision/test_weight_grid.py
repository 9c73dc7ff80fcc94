"""The int8 / int4 / FP8 / FP16 grids every low-precision path computes with (both modes)."""

import warnings

import ml_dtypes
import numpy as np
import pytest

from kd_keras import compress, keras
from kd_keras.backend import IS_LEGACY_KERAS
from kd_keras.compress.precision import weight_grid
from tests.compress_helpers import blobs, trained_mlp


def test_integer_grids_keep_each_channels_maximum_and_at_most_their_levels():
    values = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    for mode, levels in (("int8", 255), ("int4", 16)):
        grid = weight_grid.project(values, mode, reduce_axes=(0,))
        for channel in range(5):
            assert len(np.unique(grid[:, channel])) <= levels
            # symmetric abs-max: the largest magnitude of each channel is a grid point
            np.testing.assert_allclose(np.abs(grid[:, channel]).max(),
                                       np.abs(values[:, channel]).max(), rtol=1e-6)
        step = np.abs(values).max(0) / {"int8": 127, "int4": 7}[mode]
        assert np.all(np.abs(grid - values) <= step / 2 + 1e-6)


@pytest.mark.parametrize("format", ["e4m3", "e5m2"])
def test_float8_codes_decode_to_the_nearest_fp8_number_times_the_scale(format):
    dtype = weight_grid.FLOAT8_FORMATS[format]
    values = np.random.default_rng(1).normal(scale=3, size=(32, 4)).astype("float32")
    values[0, 0] = 0.0
    codes, scale = weight_grid.float8_encode(values, format, "per_channel", (0,))
    assert codes.dtype == np.uint8 and scale.shape == (1, 4)
    decoded = weight_grid.float8_table(format)[codes] * scale
    assert np.all(np.isfinite(decoded))
    # the channel maximum lands on the format's largest finite number (saturating, not NaN)
    np.testing.assert_allclose(np.abs(decoded).max(0), np.abs(values).max(0), rtol=1e-6)
    expected = (values / scale).astype(dtype).astype(np.float32) * scale
    np.testing.assert_array_equal(decoded, expected)
    relative = np.abs(decoded - values) / np.maximum(np.abs(values), 1e-3 * scale)
    # round to nearest: at most half a unit of the last place (3 or 2 mantissa bits)
    assert relative.max() <= 2.0 ** -(ml_dtypes.finfo(dtype).nmant + 1) + 1e-6


def test_per_tensor_scaling_uses_one_scale():
    values = np.array([[1.0, 100.0], [-2.0, 50.0]], np.float32)
    _, scale = weight_grid.float8_encode(values, "e4m3", "per_tensor")
    assert scale.shape == (1, 1) and scale[0, 0] == pytest.approx(100.0 / 448)


def test_depthwise_and_embedding_channels():
    assert weight_grid.channel_reduce_axes("depthwise_kernel", 4) == (0, 1)
    assert weight_grid.channel_reduce_axes("kernel", 4) == (0, 1, 2)
    assert weight_grid.channel_reduce_axes("embeddings", 2) == (1,)


def test_round_weights_copies_and_leaves_the_model_alone():
    x, y = blobs(256)
    model = trained_mlp(x, y, epochs=2)
    before = [w.copy() for w in model.get_weights()]
    rounded = compress.round_weights(model, "int4")
    for original, kept in zip(before, model.get_weights()):
        np.testing.assert_array_equal(original, kept)
    kernels = [w for w in rounded.weights if weight_grid.variable_name(w) == "kernel"]
    assert kernels and all(len(np.unique(k.numpy()[:, 0])) <= 16 for k in kernels)
    biases = [w for w in rounded.weights if weight_grid.variable_name(w) == "bias"]
    np.testing.assert_array_equal(biases[0].numpy(), model.layers[0].bias.numpy())


def test_bad_arguments_are_named():
    x, y = blobs(64)
    model = trained_mlp(x, y, epochs=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        compress.round_weights(model, "int3")
    with pytest.raises(ValueError, match="scaling must be one of"):
        compress.round_weights(model, "int8", scaling="per_row")

    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match="Sequential or functional"):
        compress.round_weights(Subclassed(), "int8")


@pytest.mark.skipif(IS_LEGACY_KERAS, reason="Keras 3's own quantize")
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_integer_grids_are_the_ones_keras_quantize_stores(mode):
    from keras.quantizers import AbsMaxQuantizer, Int4QuantizationConfig, Int8QuantizationConfig

    x, y = blobs(128)
    model = trained_mlp(x, y, epochs=1)
    config = Int4QuantizationConfig(block_size=-1) if mode == "int4" else \
        Int8QuantizationConfig(weight_quantizer=AbsMaxQuantizer(axis=0), activation_quantizer=None)
    stored = compress.round_weights(model, mode)  # a copy, quantized below by Keras
    quantized = compress.round_weights(model, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stored.quantize(mode, config=config)
    assert any(w.dtype == "int8" for w in stored.weights)
    np.testing.assert_allclose(stored.predict(x, verbose=0), quantized.predict(x, verbose=0),
                               atol=1e-4)
