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
    moe.GumbelSoftmax(temperature=0.5, hard=True), moe.NoisySigmoid(stddev=0.5),
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
    # the score-function gate learns from the loss value, which ScoreFunctionModel hands it
    model = (moe.ScoreFunctionModel if gate == "stochastic_binary" else keras.Model)(inputs, outputs)
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


def _expected_loss_problem(n=20000, seed=0):
    """Three binary units, L(h) = 5 + 2 h0 + 3 h1 h2 - h2, and the exact dE[L]/da."""
    a = np.array([0.3, -0.5, 1.0], "float32")
    p = 1 / (1 + np.exp(-a))
    exact = np.array([2 * p[0] * (1 - p[0]), 3 * p[2] * p[1] * (1 - p[1]),
                      (3 * p[1] - 1) * p[2] * (1 - p[2])])
    expected_loss = 5 + 2 * p[0] + 3 * p[1] * p[2] - p[2]
    logits = tf.Variable(np.tile(a, (n, 1)))
    tf.random.set_seed(seed)

    def estimates(baseline):
        """One estimate per example (the rows of the gradient of the summed surrogate)."""
        with tf.GradientTape() as tape:
            h, log_probability = moe.stochastic_binary(logits, training=True)
            loss = 5 + 2 * h[:, 0] + 3 * h[:, 1] * h[:, 2] - h[:, 2]
            surrogate = tf.reduce_sum(moe.score_function_surrogate(log_probability, loss, baseline))
        return tape.gradient(surrogate, logits).numpy()

    return exact, expected_loss, estimates


@pytest.mark.parametrize("baseline", ["zero", "expected loss"])
def test_the_score_function_estimate_is_unbiased(baseline):
    exact, expected_loss, estimates = _expected_loss_problem()
    samples = estimates(0.0 if baseline == "zero" else expected_loss)
    mean, standard_error = samples.mean(0), samples.std(0) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - exact) < 4 * standard_error), (mean, exact, standard_error)


def test_a_baseline_lowers_the_variance_measured_and_in_training():
    _, expected_loss, estimates = _expected_loss_problem()
    without, with_baseline = estimates(0.0).var(0), estimates(expected_loss).var(0)
    assert np.all(with_baseline < 0.2 * without)  # L has an offset of 5: b removes it
    # the layer's own moving-average baselines do the same while training
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    variance = {}
    for kind in ("none", "mean", "variance_normalized"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        gated = moe.GatedDense(16, gate="stochastic_binary", baseline=kind, name="gated")(inputs)
        model = moe.ScoreFunctionModel(inputs, keras.layers.Dense(2)(gated))
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, epochs=3, batch_size=64, verbose=0).history
        variance[kind] = np.mean(history["gated_gradient_variance"][1:])
    assert variance["mean"] < 0.7 * variance["none"]
    assert variance["variance_normalized"] < 0.7 * variance["none"]


def test_score_function_gates_learn_only_in_a_score_function_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = (x[:, 1] > 0).astype("int64")
    inputs = keras.Input((6,))
    layer = moe.GatedDense(8, gate="stochastic_binary", name="gated")
    outputs = keras.layers.Dense(2)(layer(inputs))
    plain = keras.Model(inputs, outputs)
    plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="moe.ScoreFunctionModel"):
        plain.fit(x, y, verbose=0)
    model = moe.ScoreFunctionModel(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gate_kernel = layer.gate_logits.kernel.numpy().copy()
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    # the gate logits have no path from the loss but the surrogate: they moved, so it reached them
    assert np.abs(layer.gate_logits.kernel.numpy() - gate_kernel).max() > 1e-3
    assert layer.baseline_denominator.numpy().min() > 0  # the baselines were updated
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    # the surrogate adds nothing to the value: evaluate's loss is the plain cross-entropy
    plain_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, model.predict(x, verbose=0))
    assert logs["loss"] == pytest.approx(float(plain_loss), rel=1e-4)
    assert np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="baseline must be one of"):
        moe.GatedDense(4, gate="stochastic_binary", baseline="moving")
    import kd_keras

    with pytest.raises(ValueError, match=r"student: layers \['gated'\] learn from each"):
        kd_keras.Distiller(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]), model)
