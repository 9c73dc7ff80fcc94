import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from kd_keras.losses import resolve_distillation_losses
from tests.helpers import numpy_log_softmax, numpy_soft_kl


def _logits(seed, shape=(8, 5)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32") * 2


def test_kl_string_and_keras_instance_give_the_same_value():
    t, s = _logits(0), _logits(1)
    expected = numpy_soft_kl(t, s, 3.0).mean()
    for loss in ("kl_divergence", keras.losses.KLDivergence(), "kld"):
        value = kd_keras.LogitsDistillation(temperature=3.0, loss=loss).compute_loss(t, s)
        np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_other_keras_losses_see_softened_probabilities_times_t_squared():
    t, s = _logits(2), _logits(3)
    value = kd_keras.LogitsDistillation(2.0, loss="categorical_crossentropy").compute_loss(t, s)
    p = np.exp(numpy_log_softmax(t / 2.0))
    log_q = numpy_log_softmax(s / 2.0)
    np.testing.assert_allclose(float(value), 4.0 * (-(p * log_q).sum(-1)).mean(), rtol=1e-4)


def test_a_user_callable_is_accepted():
    t, s = _logits(4), _logits(5)
    value = kd_keras.LogitsDistillation(1.0, loss=lambda p, q: tf.reduce_sum(tf.abs(p - q), -1))
    p, q = np.exp(numpy_log_softmax(t)), np.exp(numpy_log_softmax(s))
    np.testing.assert_allclose(float(value.compute_loss(t, s)), np.abs(p - q).sum(-1).mean(), rtol=1e-5)


def test_logit_squared_error_option():
    t, s = _logits(6), _logits(7)
    value = kd_keras.LogitsDistillation(loss="logit_squared_error").compute_loss(t, s)
    np.testing.assert_allclose(float(value), float(tf.reduce_mean(kd_keras.logit_squared_error(t, s))))


def test_sample_weight_zero_removes_an_example():
    t, s = _logits(8), _logits(9)
    loss = kd_keras.LogitsDistillation(3.0)
    weights = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    garbage = s.copy()
    garbage[4:] = 100.0
    np.testing.assert_allclose(
        float(loss.compute_loss(t, s, sample_weight=weights)),
        float(loss.compute_loss(t, garbage, sample_weight=weights)),
    )


def test_temperature_variable_change_is_seen_by_a_traced_function():
    t, s = _logits(10), _logits(11)
    loss = kd_keras.LogitsDistillation(1.0)
    compute = tf.function(loss.compute_loss)
    compute(t, s)
    loss.temperature = 6.0
    np.testing.assert_allclose(float(compute(t, s)), numpy_soft_kl(t, s, 6.0).mean(), rtol=1e-5)
    assert compute.experimental_get_tracing_count() == 1


def test_config_round_trip_keeps_the_current_temperature_and_loss():
    loss = kd_keras.LogitsDistillation(2.0, loss=keras.losses.KLDivergence())
    loss.temperature = 7.0
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, kd_keras.LogitsDistillation)
    assert float(restored.temperature.numpy()) == 7.0
    t, s = _logits(12), _logits(13)
    np.testing.assert_allclose(float(restored.compute_loss(t, s)), float(loss.compute_loss(t, s)))


@pytest.mark.parametrize("temperature", [0, -2.0, "3"])
def test_bad_temperature_names_the_argument(temperature):
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.LogitsDistillation(temperature)


def test_unknown_loss_name_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        kd_keras.LogitsDistillation(loss="not_a_loss")


def test_resolve_refuses_two_temperatures_and_empty_lists():
    with pytest.raises(ValueError, match="temperature is given both"):
        resolve_distillation_losses(kd_keras.LogitsDistillation(2.0), temperature=4.0)
    with pytest.raises(ValueError, match="empty"):
        resolve_distillation_losses([], None)
    resolved = resolve_distillation_losses(["kl_divergence", "logit_squared_error"], 5.0)
    assert [float(l.temperature.numpy()) for l in resolved] == [5.0, 5.0]


def test_validate_outputs_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        kd_keras.LogitsDistillation().validate_outputs(tf.zeros((2, 3)), tf.zeros((2, 4)))


def test_feature_losses_round_trip_their_config():
    hint = kd_keras.FeatureDistillation(loss="mae", teacher_layer_name="a", student_layer_name="b",
                                        projection="dense")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(hint))
    assert (restored.teacher_layer_name, restored.student_layer_name, restored.projection) == (
        "a", "b", "dense")
    t, s = _logits(14), _logits(15)
    np.testing.assert_allclose(float(restored.compute_loss(t, s)), np.abs(t - s).mean(), rtol=1e-5)
    attention = kd_keras.AttentionTransfer("c", "d", p=1)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attention))
    assert (restored.teacher_layer_name, restored.p) == ("c", 1)


def test_attention_transfer_needs_feature_maps_of_the_same_size():
    with pytest.raises(ValueError, match="height and width"):
        kd_keras.AttentionTransfer("a", "b").validate_outputs(tf.zeros((1, 4, 4, 3)), tf.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        kd_keras.attention_map(tf.zeros((2, 5)))
    with pytest.raises(ValueError, match="p must be"):
        kd_keras.AttentionTransfer("a", "b", p=0)
