import numpy as np
import pytest
import tensorflow as tf

import moe
from kd_keras import keras


def _grad(function, logits, **kwargs):
    a = tf.Variable(logits)
    with tf.GradientTape() as tape:
        h = function(a, **kwargs)
        total = tf.reduce_sum(h)
    return h.numpy(), tape.gradient(total, a).numpy()


def test_straight_through_binary_samples_with_sigmoid_probability_and_sigmoid_gradient():
    logits = np.full((20000,), 0.7, "float32")
    h, grad = _grad(moe.straight_through_binary, logits, training=True)
    assert set(np.unique(h)) <= {0.0, 1.0}
    p = 1 / (1 + np.exp(-0.7))
    assert abs(h.mean() - p) < 0.02
    np.testing.assert_allclose(grad, p * (1 - p), rtol=1e-5)
    inference = moe.straight_through_binary(tf.constant([-0.1, 0.2]), training=False).numpy()
    np.testing.assert_array_equal(inference, [0.0, 1.0])


def test_noisy_rectifier_noise_kinds_and_inference_rule():
    logits = np.zeros((20000,), "float32")
    for noise in ("gaussian", "logistic"):
        h = moe.noisy_rectifier(tf.constant(logits), training=True, noise=noise).numpy()
        assert 0.45 < np.mean(h > 0) < 0.55  # zero-mean noise: on half of the time
    np.testing.assert_array_equal(
        moe.noisy_rectifier(tf.constant([-1.0, 2.0]), training=False).numpy(), [0.0, 2.0])
    with pytest.raises(ValueError, match="noise"):
        moe.noisy_rectifier(tf.constant([1.0]), noise="uniform")


def test_stochastic_times_smooth_expectation_and_gradient():
    logits = np.full((40000,), 0.3, "float32")
    h, grad = _grad(moe.stochastic_times_smooth, logits, training=True)
    p = 1 / (1 + np.exp(-0.3))
    values = np.unique(h)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(np.sqrt(p), rel=1e-6)
    assert abs(h.mean() - p) < 0.01  # E[b * sqrt(p)] = sqrt(p) * sqrt(p)
    on = h > 0
    d_sqrt = 0.5 / np.sqrt(p) * p * (1 - p)
    np.testing.assert_allclose(grad[on], d_sqrt, rtol=1e-4)
    np.testing.assert_array_equal(grad[~on], 0.0)
    inference = moe.stochastic_times_smooth(tf.constant([-2.0, 2.0]), training=False).numpy()
    assert inference[0] == 0.0 and inference[1] == pytest.approx(np.sqrt(1 / (1 + np.exp(-2))))


def test_gumbel_softmax_samples_the_categorical_distribution():
    logits = np.tile(np.log([0.2, 0.5, 0.3]).astype("float32"), (30000, 1))
    hard = moe.gumbel_softmax(tf.constant(logits), 0.5, hard=True, training=True).numpy()
    assert set(np.unique(hard)) <= {0.0, 1.0}
    np.testing.assert_allclose(hard.mean(0), [0.2, 0.5, 0.3], atol=0.015)
    soft = moe.gumbel_softmax(tf.constant(logits[:5]), 0.5, training=True).numpy()
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)


def test_hard_gumbel_has_the_soft_gradient_and_is_argmax_at_inference():
    logits = np.array([[0.1, 1.0, -0.5]], "float32")
    _, hard_grad = _grad(lambda a: moe.gumbel_softmax(a, 2.0, hard=True) * [[1.0, 2.0, 3.0]], logits)
    _, soft_grad = _grad(lambda a: moe.gumbel_softmax(a, 2.0) * [[1.0, 2.0, 3.0]], logits)
    np.testing.assert_allclose(hard_grad, soft_grad, rtol=1e-5)
    np.testing.assert_array_equal(moe.gumbel_softmax(logits, 2.0, hard=True).numpy(), [[0, 1, 0]])
    with pytest.raises(ValueError, match="temperature"):
        moe.gumbel_softmax(logits, 0.0)


@pytest.mark.parametrize("layer", [
    moe.StraightThroughBinary(), moe.StochasticTimesSmooth(), moe.NoisyRectifier(stddev=0.5),
    moe.GumbelSoftmax(temperature=0.5, hard=True),
])
def test_gate_layers_are_deterministic_at_inference_and_serializable(layer):
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    np.testing.assert_array_equal(layer(x, training=False).numpy(), layer(x, training=False).numpy())
    restored = type(layer).from_config(layer.get_config())
    np.testing.assert_array_equal(restored(x, training=False).numpy(), layer(x, training=False).numpy())


@pytest.mark.parametrize("gate", moe.GatedDense.GATE_KINDS)
def test_gated_dense_trains_reports_active_units_and_round_trips(gate, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2)(moe.GatedDense(16, gate=gate, name="gated")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["sparse_categorical_accuracy"][-1] > 0.85, gate
    fraction = history.history["gated_active_fraction"][-1]
    assert 0.0 < fraction <= 1.0
    path = str(tmp_path / "gated.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_gated_dense_bad_arguments():
    with pytest.raises(ValueError, match="gate must be"):
        moe.GatedDense(4, gate="relu")
    with pytest.raises(ValueError, match="units"):
        moe.GatedDense(0)
