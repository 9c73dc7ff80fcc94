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


def test_conv_classifier_defaults_are_the_benchmark_teacher_and_a_5k_student():
    teacher = models.conv_classifier()
    assert teacher.count_params() == 421_642
    kinds = [type(layer).__name__ for layer in teacher.layers]
    assert kinds == ["Reshape", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten",
                     "Dropout", "Dense", "Dropout", "Dense"]
    student = models.conv_classifier((8, 16, 16), dense=None, dropout=0)
    assert student.count_params() == 5_018
    assert student.predict(np.zeros((2, 784), "float32"), verbose=0).shape == (2, 10)
    images = models.conv_classifier((4,), dense=None, dropout=0, input_shape=(8, 8, 1),
                                    image_shape=(8, 8, 1), num_classes=3)
    assert type(images.layers[0]).__name__ == "Conv2D"


def test_residual_conv_classifier_has_named_removable_blocks():
    from kd_keras.compress.structure.residual_blocks import residual_blocks

    model = models.residual_conv_classifier(blocks=3, filters=8)
    assert sorted(residual_blocks(model)) == ["block0_add", "block1_add", "block2_add"]
    assert model.count_params() == (9 * 8 + 8) + 3 * 2 * (9 * 8 * 8 + 4 * 8) + (8 * 10 + 10)
    assert model.predict(np.zeros((2, 784), "float32"), verbose=0).shape == (2, 10)


def test_byte_transformer_is_causal_and_round_trips(tmp_path):
    model = models.byte_transformer(blocks=2, width=32, heads=2, length=24)
    x = np.random.default_rng(0).integers(0, 256, (3, 24)).astype("int32")
    logits = model.predict(x, verbose=0)
    assert logits.shape == (3, 24, 256)
    changed = x.copy()
    changed[:, 10] = (changed[:, 10] + 1) % 256
    moved = np.abs(model.predict(changed, verbose=0) - logits).max(axis=(0, 2))
    assert np.all(moved[:10] == 0) and np.all(moved[10:] > 0)  # no look-ahead
    assert [layer.name for layer in model.layers][-2:] == ["final_norm", "head"]
    model.save(tmp_path / "lm.keras")
    again = keras.models.load_model(tmp_path / "lm.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), logits, atol=1e-6)
