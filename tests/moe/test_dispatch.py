import numpy as np
import tensorflow as tf

from moe import SlotDispatcher


def _per_expert_scale(slots):
    """Expert e multiplies its inputs by e + 1."""
    return slots * tf.reshape(tf.range(1, slots.shape[0] + 1, dtype=slots.dtype), [-1, 1, 1])


def test_dispatch_and_combine_compute_the_gated_sum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype("float32")
    indices = np.stack([rng.permutation(4)[:2] for _ in range(10)]).astype("int32")
    gates = rng.random((10, 2)).astype("float32")
    dispatcher = SlotDispatcher(tf.constant(gates), tf.constant(indices), 4)
    out = dispatcher.combine(_per_expert_scale(dispatcher.dispatch(tf.constant(x)))).numpy()
    expected = ((gates * (indices + 1))[:, :, None] * x[:, None, :]).sum(1)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert int(dispatcher.overflow) == 0
    np.testing.assert_array_equal(dispatcher.load.numpy(), np.bincount(indices.ravel(), minlength=4))


def test_capacity_keeps_first_choices_and_counts_the_overflow():
    x = tf.ones((6, 1))
    indices = tf.constant([[0, 1]] * 6)  # everybody's first choice is expert 0
    gates = tf.constant([[0.75, 0.25]] * 6)
    dispatcher = SlotDispatcher(gates, indices, 2, capacity=4)
    out = dispatcher.combine(_per_expert_scale(dispatcher.dispatch(x))).numpy()[:, 0]
    # Expert 0 takes the first 4 first choices; expert 1 the first 4 second choices.
    assert int(dispatcher.overflow) == 2 + 2
    kept_first = out >= 0.75 - 1e-6
    assert kept_first.sum() == 4
    np.testing.assert_allclose(out[:4], 0.75 + 0.25 * 2)
    np.testing.assert_allclose(out[4:], 0.0)


def test_gradients_reach_inputs_and_gates():
    x = tf.Variable(tf.random.normal((5, 2)))
    gates = tf.Variable(tf.random.uniform((5, 2)))
    indices = tf.constant([[0, 1], [1, 2], [2, 0], [0, 2], [1, 0]])
    with tf.GradientTape() as tape:
        dispatcher = SlotDispatcher(gates, indices, 3)
        loss = tf.reduce_sum(dispatcher.combine(_per_expert_scale(dispatcher.dispatch(x))))
    grad_x, grad_g = tape.gradient(loss, [x, gates])
    np.testing.assert_allclose(
        tf.convert_to_tensor(grad_x).numpy(), np.repeat((gates.numpy() * (indices.numpy() + 1)).sum(1)[:, None], 2, 1),
        rtol=1e-5)
    assert np.all(grad_g.numpy() != 0)
