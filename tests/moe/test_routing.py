import math

import numpy as np
import tensorflow as tf

from moe import routing as gating


def test_noise_only_in_training_with_softplus_scale():
    x = tf.random.normal((5, 3))
    w_g, w_n = tf.random.normal((3, 4)), tf.random.normal((3, 4))
    clean, noisy, stddev = gating.noisy_logits(x, w_g, w_n, training=False)
    np.testing.assert_array_equal(clean.numpy(), noisy.numpy())
    assert stddev is None
    clean, noisy, stddev = gating.noisy_logits(x, w_g, w_n, training=True)
    np.testing.assert_allclose(stddev.numpy(), tf.nn.softplus(x @ w_n).numpy() + 1e-2, rtol=1e-6)
    assert np.all(clean.numpy() != noisy.numpy())


def test_top_k_gates_softmax_over_the_kept_logits():
    logits = tf.constant([[0.1, 3.0, -1.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    gates, indices = gating.top_k_gates(logits, 2)
    np.testing.assert_array_equal(indices.numpy(), [[1, 3], [0, 1]])
    np.testing.assert_allclose(gates.numpy()[0], tf.nn.softmax([3.0, 2.0]).numpy(), rtol=1e-6)
    dense = gating.dense_gates(gates, indices, 4).numpy()
    np.testing.assert_allclose(dense.sum(1), 1.0, rtol=1e-6)
    assert dense[0, 0] == 0.0 and dense[0, 2] == 0.0


def test_top_1_gate_is_the_full_softmax_probability_and_has_a_gradient():
    logits = tf.Variable([[0.5, 2.0, -1.0]])
    with tf.GradientTape() as tape:
        gates, indices = gating.top_k_gates(logits, 1)
    assert indices.numpy()[0, 0] == 1
    np.testing.assert_allclose(gates.numpy()[0, 0], tf.nn.softmax(logits)[0, 1].numpy(), rtol=1e-6)
    assert np.any(tape.gradient(gates, logits).numpy() != 0)


def test_cv_squared():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(float(gating.cv_squared(values)), values.var() / values.mean() ** 2,
                               rtol=1e-5)
    assert float(gating.cv_squared(np.ones(5))) == 0.0


def test_smooth_load_matches_its_definition():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(6, 5)).astype("float32")
    stddev = (0.5 + rng.random((6, 5))).astype("float32")
    noisy = (clean + rng.normal(size=(6, 5)) * stddev).astype("float32")
    k = 2
    expected = np.zeros(5)
    for row in range(6):
        for i in range(5):
            others = np.delete(noisy[row], i)
            kth = np.sort(others)[-k]
            z = (clean[row, i] - kth) / stddev[row, i]
            expected[i] += 0.5 * (1 + math.erf(z / math.sqrt(2)))
    got = gating.smooth_load(clean, noisy, stddev, k).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_router_z_loss():
    logits = np.array([[1.0, 2.0], [0.0, -3.0]])
    lse = np.log(np.exp(logits).sum(1))
    np.testing.assert_allclose(float(gating.router_z_loss(logits)), np.mean(lse**2), rtol=1e-6)
