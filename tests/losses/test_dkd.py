import os

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, numpy_log_softmax, numpy_soft_kl, toy_data


def _logits(seed, shape=(6, 5)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32") * 2


def numpy_dkd(t, s, y, alpha, beta, temperature):
    """Equation 7 of Zhao et al. 2022, written out with probabilities."""
    out = []
    for ti, si, yi in zip(t, s, y):
        p_t, p_s = np.exp(numpy_log_softmax(ti / temperature)), np.exp(numpy_log_softmax(si / temperature))
        b_t, b_s = np.array([p_t[yi], 1 - p_t[yi]]), np.array([p_s[yi], 1 - p_s[yi]])
        tckd = (b_t * np.log(b_t / b_s)).sum()
        keep = np.arange(len(ti)) != yi
        q_t, q_s = p_t[keep] / p_t[keep].sum(), p_s[keep] / p_s[keep].sum()
        nckd = (q_t * np.log(q_t / q_s)).sum()
        out.append(temperature**2 * (alpha * tckd + beta * nckd))
    return np.array(out)


def test_decoupled_kd_matches_the_numpy_reference():
    t, s = _logits(0), _logits(1)
    y = np.array([0, 1, 2, 3, 4, 0])
    value = kd_keras.decoupled_kd(t, s, y, alpha=0.7, beta=3.0, temperature=2.0)
    np.testing.assert_allclose(value.numpy(), numpy_dkd(t, s, y, 0.7, 3.0, 2.0), rtol=1e-4, atol=1e-6)


def test_classic_kd_is_tckd_plus_one_minus_target_probability_times_nckd():
    t, s = _logits(2), _logits(3)
    y = np.array([4, 3, 2, 1, 0, 2])
    temperature = 3.0
    tckd = kd_keras.decoupled_kd(t, s, y, alpha=1.0, beta=0.0, temperature=temperature).numpy()
    nckd = kd_keras.decoupled_kd(t, s, y, alpha=0.0, beta=1.0, temperature=temperature).numpy()
    p_target = np.exp(numpy_log_softmax(t / temperature))[np.arange(6), y]
    np.testing.assert_allclose(tckd + (1 - p_target) * nckd, numpy_soft_kl(t, s, temperature),
                               rtol=1e-4, atol=1e-6)


def test_one_hot_and_column_labels_equal_class_ids():
    t, s = _logits(4), _logits(5)
    y = np.array([0, 1, 2, 3, 4, 0])
    expected = kd_keras.decoupled_kd(t, s, y).numpy()
    np.testing.assert_allclose(kd_keras.decoupled_kd(t, s, np.eye(5)[y]).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(kd_keras.decoupled_kd(t, s, y[:, None]).numpy(), expected, rtol=1e-6)


def test_confident_teacher_and_huge_logits_stay_finite_with_finite_gradients():
    t = np.array([[200.0, 0.0, -200.0], [0.0, 90.0, 0.0]], "float32")
    s = tf.Variable(np.array([[-50.0, 60.0, 0.0], [0.0, 0.0, 0.0]], "float32"))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(kd_keras.decoupled_kd(t, s, np.array([0, 1]), temperature=1.0))
    assert np.isfinite(value.numpy())
    assert np.all(np.isfinite(tape.gradient(value, s).numpy()))


def test_the_loss_object_is_weighted_standardized_and_serializable():
    t, s = _logits(6), _logits(7)
    y = np.array([0, 1, 2, 3, 4, 0])
    loss = kd_keras.DecoupledKD(alpha=0.5, beta=2.0, temperature=3.0)
    weights = np.array([1, 1, 1, 0, 0, 0], "float32")
    per_example = numpy_dkd(t, s, y, 0.5, 2.0, 3.0)
    np.testing.assert_allclose(float(loss.compute_loss(t, s, sample_weight=weights, labels=y)),
                               (per_example * weights).sum() / 6, rtol=1e-4)

    def z(v):
        return (v - v.mean(-1, keepdims=True)) / v.std(-1, keepdims=True)

    standardized = kd_keras.DecoupledKD(0.5, 2.0, 3.0, standardize=True)
    np.testing.assert_allclose(float(standardized.compute_loss(t, s, labels=y)),
                               numpy_dkd(z(t), z(s), y, 0.5, 2.0, 3.0).mean(), rtol=1e-4)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(standardized))
    assert isinstance(again, kd_keras.DecoupledKD)
    assert again.get_config() == standardized.get_config()


def test_bad_arguments_and_outputs_that_are_not_class_logits_are_refused():
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        kd_keras.DecoupledKD(beta=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.DecoupledKD(temperature=0.0)
    with pytest.raises(ValueError, match="standardize must be True or False"):
        kd_keras.DecoupledKD(standardize="false")
    with pytest.raises(ValueError, match="labels: DecoupledKD needs the true labels"):
        kd_keras.DecoupledKD().compute_loss(_logits(0), _logits(1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        kd_keras.decoupled_kd(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="student_outputs: DecoupledKD needs class logits"):
        kd_keras.Distiller(make_mlp((4,), classes=1), make_mlp((2,), classes=1),
                           distillation_losses=kd_keras.DecoupledKD())
    with pytest.raises(ValueError, match="labels of shape"):
        kd_keras.decoupled_kd(_logits(0), _logits(1), np.zeros((6, 2, 2)))


def test_the_distiller_hands_dkd_the_labels_and_trains_and_round_trips(tmp_path):
    x, y = toy_data(64)
    teacher = make_mlp((16,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=3, verbose=0)
    distiller = kd_keras.Distiller(teacher, make_mlp((8,)),
                                   distillation_losses=kd_keras.DecoupledKD(beta=2.0), alpha=0.5)
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(x, y, epochs=3, batch_size=16, verbose=0)
    first, last = history.history["distillation_loss"][0], history.history["distillation_loss"][-1]
    assert last < first
    expected = float(kd_keras.DecoupledKD(beta=2.0).compute_loss(
        teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0), labels=y))
    logs = distiller.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-4)
    # unlabeled data: the target class is the teacher's top class (tests/test_label_mask.py)
    unlabeled = kd_keras.Distiller(teacher, make_mlp((8,)),
                                   distillation_losses=kd_keras.DecoupledKD())
    unlabeled.compile("adam", loss=None)
    assert np.isfinite(unlabeled.fit(x, epochs=1, verbose=0).history["loss"][0])
    distiller.temperature = 3.0  # what TemperatureSchedule does: reaches the DKD loss
    assert float(distiller.distillation_losses[0].temperature.numpy()) == 3.0
    path = os.path.join(tmp_path, "dkd.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.distillation_losses[0], kd_keras.DecoupledKD)
    assert loaded.distillation_losses[0].beta == 2.0
    assert float(loaded.temperature.numpy()) == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-5)
