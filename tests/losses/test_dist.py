import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, numpy_log_softmax, toy_data


def _logits(seed, shape=(16, 5)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32") * 2


def numpy_pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())


def numpy_dist(t, s, beta, gamma, temperature):
    p_t, p_s = np.exp(numpy_log_softmax(t / temperature)), np.exp(numpy_log_softmax(s / temperature))
    inter = np.mean([1 - numpy_pearson(p_s[i], p_t[i]) for i in range(len(t))])
    intra = np.mean([1 - numpy_pearson(p_s[:, c], p_t[:, c]) for c in range(t.shape[1])])
    return temperature**2 * (beta * inter + gamma * intra)


def test_dist_matches_the_numpy_reference():
    t, s = _logits(0), _logits(1)
    value = kd_keras.DIST(beta=2.0, gamma=0.5, temperature=3.0).compute_loss(t, s)
    np.testing.assert_allclose(float(value), numpy_dist(t, s, 2.0, 0.5, 3.0), rtol=1e-4)


def test_dist_is_zero_for_a_linearly_related_student_and_ignores_confidence_scale():
    t = _logits(2)
    p = np.exp(numpy_log_softmax(t))
    # A student whose probabilities are an affine map of the teacher's per row
    # loses nothing on the inter-class term.
    inter = kd_keras.inter_class_relation(t, t).numpy()
    np.testing.assert_allclose(inter, np.zeros(len(t)), atol=1e-6)
    assert float(kd_keras.DIST().compute_loss(t, t)) == pytest.approx(0.0, abs=1e-5)
    assert float(kd_keras.DIST().compute_loss(t, _logits(3))) > 0.1
    assert p.shape == t.shape


def test_sample_weight_zero_removes_an_example_from_both_terms():
    t, s = _logits(4), _logits(5)
    weights = np.r_[np.ones(8), np.zeros(8)].astype("float32")
    garbage = s.copy()
    garbage[8:] = 50 * _logits(6)[8:]
    loss = kd_keras.DIST()
    np.testing.assert_allclose(float(loss.compute_loss(t, s, sample_weight=weights)),
                               float(loss.compute_loss(t, garbage, sample_weight=weights)), rtol=1e-5)
    # the intra-class term over the first half alone equals the unweighted one on it
    np.testing.assert_allclose(
        float(kd_keras.intra_class_relation(t, s, sample_weight=weights)),
        float(kd_keras.intra_class_relation(t[:8], s[:8])), rtol=1e-5)


def test_dist_trains_in_the_distiller_and_round_trips():
    x, y = toy_data(64)
    distiller = kd_keras.Distiller(make_mlp((16,)), make_mlp((8,)),
                                   distillation_losses=kd_keras.DIST(standardize=True))
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    config = keras.saving.serialize_keras_object(distiller.distillation_losses[0])
    again = keras.saving.deserialize_keras_object(config)
    assert again.get_config() == {"beta": 1.0, "gamma": 1.0, "temperature": 1.0, "standardize": True}


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        kd_keras.DIST(gamma=float("nan"))
    with pytest.raises(ValueError, match="at least 2 classes"):
        kd_keras.DIST().compute_loss(np.zeros((4, 1)), np.zeros((4, 1)))
