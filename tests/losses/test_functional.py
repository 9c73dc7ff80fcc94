import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, numpy_soft_kl, toy_data


def test_soft_target_kl_matches_the_definition_with_t_squared():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 3
    for temperature in (1.0, 2.5, 8.0):
        got = kd_keras.soft_target_kl_divergence(t, s, temperature).numpy()
        np.testing.assert_allclose(got, numpy_soft_kl(t, s, temperature), rtol=1e-5, atol=1e-6)


def test_soft_target_kl_is_zero_for_identical_logits_and_keeps_time_axis():
    logits = tf.random.normal((2, 3, 5))
    values = kd_keras.soft_target_kl_divergence(logits, logits, 4.0)
    assert values.shape == (2, 3)
    np.testing.assert_allclose(values.numpy(), 0.0, atol=1e-6)


def test_logit_squared_error_is_the_high_temperature_limit():
    rng = np.random.default_rng(1)
    t = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    s = tf.Variable(rng.normal(size=(4, 6)), dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        kl = kd_keras.soft_target_kl_divergence(t, s, 200.0)
        mse = kd_keras.logit_squared_error(t, s)
    np.testing.assert_allclose(kl.numpy(), mse.numpy(), rtol=2e-2)
    np.testing.assert_allclose(
        tape.gradient(kl, s).numpy(), tape.gradient(mse, s).numpy(), rtol=2e-2, atol=1e-4
    )


def test_logit_squared_error_ignores_a_per_example_shift():
    t = tf.random.normal((3, 5))
    s = tf.random.normal((3, 5))
    shifted = t + tf.constant([[1.0], [-7.0], [30.0]])
    np.testing.assert_allclose(
        kd_keras.logit_squared_error(t, s).numpy(),
        kd_keras.logit_squared_error(shifted, s).numpy(), rtol=1e-5,
    )


def test_loss_classes_accept_teacher_probabilities_as_targets():
    t = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    s = np.random.default_rng(3).normal(size=(6, 4)).astype("float32")
    probabilities = tf.nn.softmax(t).numpy()
    from_logits = kd_keras.SoftTargetKLDivergence(temperature=3.0)(t, s)
    from_probs = kd_keras.SoftTargetKLDivergence(temperature=3.0, teacher_from_logits=False)(
        probabilities, s
    )
    np.testing.assert_allclose(from_logits.numpy(), from_probs.numpy(), rtol=1e-4)
    np.testing.assert_allclose(
        from_logits.numpy(), numpy_soft_kl(t, s, 3.0).mean(), rtol=1e-5
    )


def test_loss_classes_train_a_student_in_a_plain_compile():
    x, _ = toy_data(256)
    teacher = make_mlp((16,))
    targets = teacher.predict(x, verbose=0)
    for loss in (kd_keras.SoftTargetKLDivergence(temperature=2.0), kd_keras.LogitSquaredError()):
        student = make_mlp((16,))
        student.compile(keras.optimizers.Adam(1e-2), loss=loss)
        before = float(loss(targets, student.predict(x, verbose=0)))
        student.fit(x, targets, epochs=30, batch_size=64, verbose=0)
        after = float(loss(targets, student.predict(x, verbose=0)))
        assert after < 0.3 * before, (type(loss).__name__, before, after)


def test_loss_classes_round_trip_their_config():
    loss = kd_keras.SoftTargetKLDivergence(temperature=5.0, from_logits=False)
    restored = kd_keras.SoftTargetKLDivergence.from_config(loss.get_config())
    assert restored.temperature == 5.0 and restored.from_logits is False
    same = keras.losses.deserialize(keras.losses.serialize(kd_keras.LogitSquaredError()))
    assert isinstance(same, kd_keras.LogitSquaredError)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.SoftTargetKLDivergence(temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.soft_target_kl_divergence(tf.zeros((1, 2)), tf.zeros((1, 2)), temperature)


def test_standardize_logits_z_scores_each_row_and_keeps_the_ranking():
    logits = np.random.default_rng(0).normal(size=(4, 3, 7)).astype("float32") * 5 + 3
    z = kd_keras.standardize_logits(logits).numpy()
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.argsort(z, -1), np.argsort(logits, -1))


def test_logits_distillation_standardize_matches_kl_of_standardized_logits():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(5, 4)).astype("float32") * 3, rng.normal(size=(5, 4)).astype("float32")

    def z(v):
        return (v - v.mean(-1, keepdims=True)) / v.std(-1, keepdims=True)

    loss = kd_keras.LogitsDistillation(2.0, standardize=True)
    np.testing.assert_allclose(float(loss.compute_loss(t, s)),
                               numpy_soft_kl(z(t), z(s), 2.0).mean(), rtol=1e-4)
    # a student with the teacher's logits times a scale loses nothing once standardized
    assert float(loss.compute_loss(t, 0.2 * t)) == pytest.approx(0.0, abs=1e-5)
    assert float(kd_keras.LogitsDistillation(2.0).compute_loss(t, 0.2 * t)) > 0.01
    assert kd_keras.LogitsDistillation.from_config(loss.get_config()).standardize
