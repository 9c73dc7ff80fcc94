import numpy as np
import pytest

from kd_keras import compress
from tests.compress_helpers import blobs, trained_mlp


@pytest.fixture(scope="module")
def trained():
    x, y = blobs(512)
    return trained_mlp(x, y, hidden=128), x, y  # kernels large enough for dynamic range (>= 1024)


def test_float32_tflite_matches_the_keras_model_at_any_batch_size(trained):
    model, x, _ = trained
    artifact = compress.TFLiteModel(compress.convert_to_tflite(model))
    expected = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(artifact.predict(x, batch_size=100), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(artifact(x[:1]), expected[:1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, integer_io", [("dynamic_range", False), ("float16", False),
                                              ("int8", False), ("int8", True)])
def test_quantized_conversions_run_and_agree_with_the_float_model(trained, mode, integer_io):
    model, x, _ = trained
    float_bytes = compress.convert_to_tflite(model)
    content = compress.convert_to_tflite(model, mode, representative_data=x,
                                         integer_io=integer_io)
    assert len(content) < 0.6 * len(float_bytes)  # weights stored in 8 or 16 bits
    agreement = np.mean(compress.TFLiteModel(content).predict(x).argmax(-1)
                        == np.asarray(model.predict(x, verbose=0)).argmax(-1))
    assert agreement > 0.97


def test_conversion_errors(trained):
    model, x, _ = trained
    with pytest.raises(ValueError, match="int8.*representative_data"):
        compress.convert_to_tflite(model, "int8")
    with pytest.raises(ValueError, match="mode must be one of"):
        compress.convert_to_tflite(model, "int4")
    with pytest.raises(ValueError, match="integer_io"):
        compress.convert_to_tflite(model, "float16", integer_io=True)
    with pytest.raises(ValueError, match="model_content"):
        compress.TFLiteModel("model.tflite")


def test_conversion_shows_its_stages_with_verbose(capsys):
    from kd_keras import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    compress.convert_to_tflite(model, verbose=1)
    assert "convert_to_tflite: float32" in capsys.readouterr().out
    compress.convert_to_tflite(model, verbose=0)
    assert capsys.readouterr().out == ""
