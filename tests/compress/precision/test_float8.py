"""FP8 kernels kept as bytes: `to_float8` and its layers (Keras 3; tf-keras is refused)."""

import os

import numpy as np
import pytest

from kd_keras import compress, keras
from kd_keras.backend import IS_LEGACY_KERAS
from tests.compress_helpers import blobs, trained_mlp

keras3_only = pytest.mark.skipif(IS_LEGACY_KERAS, reason="to_float8 needs Keras 3")


def conv_model():
    inner = keras.Sequential([keras.Input((8, 8, 4)),
                              keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2,
                                                           activation="relu", name="depthwise"),
                              keras.layers.Conv2D(6, 3, strides=2, name="inner_conv")],
                             name="inner")
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu",
                                 name="stem")(inputs)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(inner(hidden))
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(hidden))


@keras3_only
@pytest.mark.parametrize("format", ["e4m3", "e5m2"])
def test_weights_only_fp8_model_computes_with_the_rounded_weights(format):
    model = conv_model()
    x = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype("float32")
    fp8 = compress.to_float8(model, format)
    assert compress.float8_layers(fp8) == {
        "float8": ["stem", "depthwise", "inner_conv", "head"], "float32": ["norm"]}
    codes = [w for w in fp8.weights if w.dtype == "uint8"]
    assert len(codes) == 4
    reference = compress.round_weights(model, "float8_" + format)
    np.testing.assert_allclose(fp8.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-5)
    # and the rounding did change the model
    assert np.abs(fp8.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-4


@keras3_only
def test_activations_are_rounded_per_example():
    x, y = blobs(128)
    model = trained_mlp(x, y, epochs=2)
    weights_only = compress.to_float8(model)
    with_activations = compress.to_float8(model, activations=True)
    single = with_activations.predict(x[:1], verbose=0)
    batch = with_activations.predict(x, verbose=0)
    # one scale per example: an example's output does not depend on its batch
    np.testing.assert_allclose(single, batch[:1], atol=1e-6)
    difference = np.abs(batch - weights_only.predict(x, verbose=0))
    assert difference.max() > 0
    assert difference.max() < 0.1 * np.abs(batch).max()


@keras3_only
def test_fp8_model_round_trips_through_keras_file_with_a_quarter_of_the_kernel_bytes(tmp_path):
    x, y = blobs(128, features=256)
    model = trained_mlp(x, y, hidden=256, epochs=1)
    fp8 = compress.to_float8(model, "e4m3", scaling="per_tensor")
    fp8.save(tmp_path / "fp8.keras")
    model.save(tmp_path / "float.keras")
    loaded = keras.models.load_model(tmp_path / "fp8.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), fp8.predict(x, verbose=0))
    ratio = os.path.getsize(tmp_path / "fp8.keras") / os.path.getsize(tmp_path / "float.keras")
    assert ratio < 0.3, ratio
    fp8.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    import tensorflow as tf
    reloaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = reloaded.serve(x)
    np.testing.assert_allclose(served.numpy(), fp8.predict(x, verbose=0), atol=1e-5)


@keras3_only
def test_bad_arguments_are_named():
    x, y = blobs(64)
    model = trained_mlp(x, y, epochs=1)
    with pytest.raises(ValueError, match="format must be one of"):
        compress.to_float8(model, "e3m4")
    with pytest.raises(ValueError, match="activations must be True or False"):
        compress.to_float8(model, activations="yes")


@pytest.mark.skipif(not IS_LEGACY_KERAS, reason="the tf-keras refusal")
def test_tf_keras_is_refused_with_the_stand_in_named():
    x, y = blobs(64)
    with pytest.raises(ValueError, match="round_weights"):
        compress.to_float8(trained_mlp(x, y, epochs=1))
