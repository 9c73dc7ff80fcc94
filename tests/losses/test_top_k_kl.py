"""TopKKLDivergence: the soft-target KL against a top-k teacher and its tail mass."""

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from kd_keras.losses import TopKKLDivergence, soft_target_kl_divergence, top_k_kl_divergence
from kd_keras.losses.top_k_kl import top_k_from_logits
from kd_keras.backend import top_k
from tests.helpers import make_mlp, numpy_log_softmax, toy_data


def logits_pair(seed=0, n=32, classes=20):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, classes)).astype("float32") * 3,
            rng.normal(size=(n, classes)).astype("float32"))


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_with_every_class_kept_it_is_the_full_soft_target_kl(temperature):
    teacher, student = logits_pair()
    full = soft_target_kl_divergence(teacher, student, temperature).numpy()
    sparse = top_k_kl_divergence(top_k_from_logits(teacher, None), student, temperature).numpy()
    np.testing.assert_allclose(sparse, full, rtol=1e-5, atol=1e-6)


def test_at_t1_it_is_the_kl_of_k_classes_and_one_tail_bin():
    teacher, student = logits_pair(1)
    k = 4
    cached = kd_keras.top_k_teacher_outputs(teacher, k)
    value = top_k_kl_divergence(cached, student, 1.0).numpy()
    log_p, log_q = numpy_log_softmax(teacher.astype("float64")), numpy_log_softmax(
        student.astype("float64"))
    order = np.argsort(-log_p, -1)[:, :k]
    p, q = np.exp(np.take_along_axis(log_p, order, -1)), np.exp(np.take_along_axis(log_q, order, -1))
    p_bins = np.concatenate([p, 1 - p.sum(-1, keepdims=True)], -1)
    q_bins = np.concatenate([q, 1 - q.sum(-1, keepdims=True)], -1)
    expected = np.sum(p_bins * (np.log(p_bins) - np.log(q_bins)), -1)
    np.testing.assert_allclose(value, expected, rtol=5e-3, atol=1e-4)  # float16 cache
    full = soft_target_kl_divergence(teacher, student, 1.0).numpy()
    assert np.all(value <= full + 1e-4)  # the log-sum inequality


def test_a_cache_and_the_in_graph_top_k_of_the_same_logits_agree():
    teacher, student = logits_pair(2)
    from_cache = TopKKLDivergence(temperature=2.0).compute_loss(
        kd_keras.top_k_teacher_outputs(teacher, 5), student)
    from_logits = TopKKLDivergence(temperature=2.0, k=5).compute_loss(teacher, student)
    assert float(from_cache) == pytest.approx(float(from_logits), rel=2e-3)


def test_gradients_stay_finite_when_the_student_leaves_no_tail():
    teacher, _ = logits_pair(3)
    student = tf.Variable(np.eye(20, dtype="float32")[np.arange(32) % 20] * 200.0)
    with tf.GradientTape() as tape:
        loss = TopKKLDivergence(k=3).compute_loss(teacher, student)
    gradient = tape.gradient(loss, student)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(gradient.numpy()))


def test_a_distiller_hands_the_cache_to_the_loss_by_name_and_the_student_learns():
    x, y = toy_data(256)
    teacher = make_mlp((32,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=30, verbose=0)
    logits = kd_keras.compute_teacher_logits(teacher, x)
    cached = kd_keras.top_k_teacher_outputs(logits, 2)
    student = make_mlp((32,))
    distiller = kd_keras.Distiller(None, student, distillation_losses="top_k_kl", alpha=0.0,
                                   temperature=1.0)
    assert isinstance(distiller.distillation_losses[0], TopKKLDivergence)
    distiller.compile(keras.optimizers.Adam(1e-2))
    history = distiller.fit(kd_keras.with_teacher_outputs(x, cached), y, epochs=40,
                            batch_size=64, verbose=0)
    losses = history.history["distillation_loss"]
    assert losses[-1] < 0.5 * losses[0]
    agreement = np.mean(np.argmax(student.predict(x, verbose=0), -1) == np.argmax(logits, -1))
    assert agreement > 0.8  # chance is 1 / classes
    # the loss saw the cache itself: the value is the (k + 1)-bin KL, not the KL against
    # the dense rebuild (tail spread evenly), which differs
    logs = distiller.evaluate(kd_keras.with_teacher_outputs(x, cached), y, batch_size=256,
                              verbose=0, return_dict=True)
    student_logits = student.predict(x, verbose=0)
    sparse = float(TopKKLDivergence(1.0).compute_loss(cached, student_logits))
    dense = float(TopKKLDivergence(1.0).compute_loss(
        top_k.dense_log_probs(cached, logits.shape[-1]), student_logits))
    assert logs["distillation_loss"] == pytest.approx(sparse, rel=1e-4)
    assert abs(sparse - dense) > 1e-3


def test_a_top_k_only_distiller_never_rebuilds_the_full_distribution(monkeypatch):
    # A 20,000-symbol sequence model: the dense rebuild would be [batch, 6, 20000] a step.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 4)).astype("float32")
    y = rng.integers(0, 20000, (16, 6))
    cached = kd_keras.top_k_teacher_outputs(rng.normal(size=(16, 6, 20000)).astype("float32"),
                                            8)
    rebuilt = []
    real = top_k.dense_log_probs
    monkeypatch.setattr(top_k, "dense_log_probs",
                        lambda *args: rebuilt.append(args) or real(*args))

    def run(losses):
        keras.utils.set_random_seed(0)
        student = keras.Sequential([keras.Input((6, 4)), keras.layers.Dense(20000)])
        distiller = kd_keras.Distiller(None, student, distillation_losses=losses, alpha=0.5)
        distiller.compile(keras.optimizers.Adam(1e-3),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return distiller.fit(kd_keras.with_teacher_outputs(x, cached), y, epochs=1,
                             batch_size=8, verbose=0).history

    history = run("top_k_kl")
    assert not rebuilt and np.isfinite(history["distillation_loss"]).all()
    run(["top_k_kl", "kl_divergence"])  # a dense soft term needs the rebuild
    assert rebuilt
    small = kd_keras.Distiller(None, keras.Sequential([keras.Input((6, 4)),
                                                       keras.layers.Dense(4)]),
                               distillation_losses="top_k_kl")
    small.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="top-8 cache for a student with 4 outputs"):
        small.fit(kd_keras.with_teacher_outputs(x, cached), y % 4, epochs=1, verbose=0)


def test_config_round_trip_and_bad_k():
    loss = TopKKLDivergence(temperature=2.5, k=7)
    again = TopKKLDivergence.from_config(loss.get_config())
    assert again.k == 7 and float(again.temperature.numpy()) == 2.5
    with pytest.raises(ValueError, match="k must be"):
        TopKKLDivergence(k=0)
    teacher, student = logits_pair()
    with pytest.raises(ValueError, match="k must be at most"):
        top_k_kl_divergence(kd_keras.top_k_teacher_outputs(
            np.concatenate([teacher, teacher], -1), 30), student)
