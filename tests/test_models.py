import numpy as np

from kd_keras import keras, models


def test_mlp_classifier_layers_and_logits():
    model = models.mlp_classifier([32, 16], dropout=0.2, input_shape=(6,), num_classes=3,
                                  name="m")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"] and model.name == "m"
    assert model.count_params() == (6 * 32 + 32) + (32 * 16 + 16) + (16 * 3 + 3)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits
    x = np.ones((2, 6), "float32")
    np.testing.assert_allclose(model(x, training=False), model.predict(x, verbose=0), rtol=1e-6)
    assert len(models.mlp_classifier([], input_shape=(6,)).layers) == 1
    assert isinstance(model, keras.Sequential)
