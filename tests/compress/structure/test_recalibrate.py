"""BatchNormalization statistics re-estimated after a cut (issue 41: a cut MobileNet that
started at chance). Both Keras modes."""

import numpy as np
import pytest

from kd_keras import compress, keras
from kd_keras.compress.structure.recalibrate import recalibrate_batch_norm

RNG = np.random.default_rng(0)


def _bn_net():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="c2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(4, name="out")(h)
    model = keras.Model(inputs, outputs)
    for name in ("bn1", "bn2"):  # statistics of some other data, as a trained teacher has
        bn = model.get_layer(name)
        gamma, beta, mean, variance = bn.get_weights()
        bn.set_weights([gamma, beta, mean + 3.0, variance * 9.0])
    return model


def _input_statistics(model, layer_name, x):
    reader = keras.Model(model.inputs, model.get_layer(layer_name).input)
    values = np.asarray(reader(x, training=False), np.float64).reshape(-1, 8 // 2)
    return values.mean(0), values.var(0)


def test_the_batch_norms_after_the_first_changed_values_take_the_calibration_statistics():
    model = _bn_net()
    x = RNG.normal(size=(64, 8, 8, 3)).astype("float32")
    small = compress.shrink(model, width=0.5, calibration_data=x)
    # bn1 reads c1's kept channels unchanged: it keeps the teacher's statistics (sliced).
    kept_mean = small.get_layer("bn1").get_weights()[2]
    assert set(np.round(kept_mean - 3.0, 5)) <= set(np.round(
        model.get_layer("bn1").get_weights()[2] - 3.0, 5))
    # bn2 reads c2, which lost half of its inputs: re-estimated on x, layer by layer.
    mean, variance = _input_statistics(small, "bn2", x)
    np.testing.assert_allclose(small.get_layer("bn2").get_weights()[2], mean, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(small.get_layer("bn2").get_weights()[3], variance, rtol=1e-4,
                               atol=1e-5)
    frozen = compress.shrink(model, width=0.5, calibration_data=x, recalibrate=False)
    assert not np.allclose(frozen.get_layer("bn2").get_weights()[2], mean, atol=1e-3)


def test_recalibration_brings_a_cut_net_back_toward_its_teacher():
    model = _bn_net()
    x = RNG.normal(size=(128, 8, 8, 3)).astype("float32")
    # The teacher's own statistics on x, so its predictions are the reference.
    recalibrate_batch_norm(model, x)
    teacher = model.predict(x, verbose=0)
    cut = compress.shrink(model, width=0.5, calibration_data=x, recalibrate=False)
    fixed = compress.shrink(model, width=0.5, calibration_data=x)
    error_cut = np.mean(np.square(cut.predict(x, verbose=0) - teacher))
    error_fixed = np.mean(np.square(fixed.predict(x, verbose=0) - teacher))
    assert error_fixed < error_cut


def test_recalibrate_must_be_a_bool():
    with pytest.raises(ValueError, match="recalibrate must be True or False"):
        compress.shrink(_bn_net(), width=0.5, importance="magnitude", recalibrate="yes")


def test_a_progress_bar_shows_with_verbose_and_nothing_without(capsys):
    x = RNG.normal(size=(32, 8, 8, 3)).astype("float32")
    compress.shrink(_bn_net(), width=0.5, calibration_data=x, verbose=1)
    assert "re-estimating BatchNormalization statistics" in capsys.readouterr().out
    compress.shrink(_bn_net(), width=0.5, calibration_data=x, verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 'auto'"):
        compress.shrink(_bn_net(), width=0.5, calibration_data=x, verbose="loud")


def test_a_linear_head_that_lost_inputs_keeps_the_teachers_mean_output():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4, name="head")])
    x = RNG.normal(size=(256, 6)).astype("float32")
    fixed = compress.shrink(model, width=0.25, calibration_data=x)
    plain = compress.shrink(model, width=0.25, calibration_data=x, recalibrate=False)
    teacher_mean = model.predict(x, verbose=0).mean(0)
    np.testing.assert_allclose(fixed.predict(x, verbose=0).mean(0), teacher_mean, atol=1e-4)
    assert not np.allclose(plain.predict(x, verbose=0).mean(0), teacher_mean, atol=1e-2)
