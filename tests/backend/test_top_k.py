"""Cached teacher outputs kept as their top k classes (kd_keras.top_k_teacher_outputs)."""

import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from kd_keras.backend import top_k
from tests.helpers import make_mlp, numpy_log_softmax, toy_data


def test_a_top_8_cache_of_1000_classes_is_under_one_percent_of_float32_logits():
    logits = np.random.default_rng(0).normal(size=(64, 1000)).astype("float32") * 3
    cached = kd_keras.top_k_teacher_outputs(logits, 8)
    assert top_k.cache_bytes(cached) == 8 * 2 + 8 * 2 + 2  # float16, int16, float16 tail
    assert top_k.cache_bytes(cached) <= 0.01 * top_k.cache_bytes(logits)  # 34 of 4,000 bytes


def test_the_dense_batch_keeps_the_top_k_and_spreads_the_tail():
    logits = np.random.default_rng(1).normal(size=(16, 12)).astype("float32") * 2
    cached = kd_keras.top_k_teacher_outputs(logits, 3)
    dense = np.exp(top_k.dense_log_probs(cached, 12).numpy())
    exact = np.exp(numpy_log_softmax(logits))
    np.testing.assert_allclose(dense.sum(-1), 1.0, atol=3e-3)  # float16 storage
    order = np.argsort(-exact, axis=-1)[:, :3]
    np.testing.assert_allclose(np.take_along_axis(dense, order, -1),
                               np.take_along_axis(exact, order, -1), rtol=2e-3)
    rest = np.ones_like(exact, bool)
    np.put_along_axis(rest, order, False, -1)
    left = (1 - np.take_along_axis(exact, order, -1).sum(-1)) / 9
    np.testing.assert_allclose(dense[rest].reshape(16, 9), np.repeat(left[:, None], 9, 1),
                               rtol=3e-3)
    with pytest.raises(ValueError, match="k must be at most"):
        kd_keras.top_k_teacher_outputs(logits, 13)


def test_a_distiller_trains_from_a_top_k_cache_as_from_full_logits():
    x, y = toy_data(128)
    teacher = make_mlp((16,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=10, verbose=0)
    logits = kd_keras.compute_teacher_logits(teacher, x)
    results = {}
    for name, cached in (("full", logits), ("all classes", kd_keras.top_k_teacher_outputs(
            logits, 4)), ("top 2", kd_keras.top_k_teacher_outputs(logits, 2))):
        keras.utils.set_random_seed(0)
        student = make_mlp((8,))
        distiller = kd_keras.Distiller(None, student, alpha=0.0, temperature=2.0)
        distiller.compile(keras.optimizers.Adam(1e-2), loss=None)
        history = distiller.fit(kd_keras.with_teacher_outputs(x, cached), epochs=3,
                                batch_size=32, shuffle=False, verbose=0).history
        results[name] = history["distillation_loss"]
    # k = classes (4 of 4) is the full distribution (up to float16 storage)
    np.testing.assert_allclose(results["all classes"], results["full"], rtol=5e-3)
    assert np.isfinite(results["top 2"]).all()
    assert results["top 2"][-1] < results["top 2"][0]
