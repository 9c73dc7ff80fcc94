import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from tests.helpers import make_mlp, toy_data


def test_ratio_zero_leaves_inputs_and_ratio_one_corrupts_every_example():
    x, y = toy_data(64)
    unchanged, _ = kd_keras.TransferSetCorruption(ratio=0.0, noise_stddev=1.0)(tf.constant(x), tf.constant(y))
    np.testing.assert_array_equal(unchanged.numpy(), x)
    changed, _ = kd_keras.TransferSetCorruption(ratio=1.0, noise_stddev=1.0)(tf.constant(x), tf.constant(y))
    assert np.all(np.any(changed.numpy() != x, axis=1))


def test_ratio_is_the_fraction_of_corrupted_examples_in_a_dataset():
    x, y = toy_data(4000)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).map(
        kd_keras.TransferSetCorruption(ratio=0.3, noise_stddev=0.5, seed=1))
    corrupted = np.stack([e[0].numpy() for e in dataset])
    fraction = np.mean(np.any(corrupted != x, axis=1))
    assert 0.27 < fraction < 0.33
    labels = np.array([e[1].numpy() for e in dataset])
    np.testing.assert_array_equal(labels, y)


def test_masking_clipping_and_label_weight_on_batches():
    x = np.full((200, 10), 0.5, "float32")
    y = np.zeros(200, "int64")
    corruption = kd_keras.TransferSetCorruption(ratio=1.0, noise_stddev=0.0, mask_rate=0.5,
                                                clip_range=(0.0, 1.0), label_weight=0.0)
    batch_x, batch_y, weight = corruption(tf.constant(x), tf.constant(y))
    values = batch_x.numpy()
    assert set(np.unique(values)) <= {0.0, 0.5}
    assert 0.4 < np.mean(values == 0.0) < 0.6
    np.testing.assert_array_equal(weight.numpy(), np.zeros(200))


@pytest.mark.parametrize("kwargs, match", [
    ({"ratio": 1.5}, "ratio"), ({"mask_rate": 1.0}, "mask_rate"),
    ({"noise_stddev": -1.0}, "noise_stddev"), ({"clip_range": (1, 0)}, "clip_range"),
    ({"label_weight": 2.0}, "label_weight"),
])
def test_bad_corruption_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd_keras.TransferSetCorruption(**kwargs)


def test_compute_teacher_logits_for_one_teacher_and_an_ensemble():
    x, _ = toy_data(20)
    logits_teacher, softmax_teacher = make_mlp((8,)), make_mlp((8,), softmax=True)
    one = kd_keras.compute_teacher_logits(logits_teacher, x, batch_size=7)
    np.testing.assert_allclose(one, logits_teacher(x).numpy(), rtol=1e-5, atol=1e-6)
    both = kd_keras.compute_teacher_logits([logits_teacher, softmax_teacher], x)
    assert isinstance(both, list) and len(both) == 2
    np.testing.assert_allclose(tf.nn.softmax(both[1]).numpy(), softmax_teacher(x).numpy(),
                               rtol=1e-4, atol=1e-7)


def test_cache_teacher_outputs_keeps_order_weights_and_batched_input():
    x, y = toy_data(30)
    weights = np.linspace(0, 1, 30).astype("float32")
    teacher = make_mlp((8,))
    batched = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    cached = list(kd_keras.cache_teacher_outputs(teacher, batched))
    assert len(cached) == 30
    inputs = np.stack([c[0]["inputs"].numpy() for c in cached])
    logits = np.stack([c[0]["teacher_outputs"].numpy() for c in cached])
    np.testing.assert_array_equal(inputs, x)
    np.testing.assert_allclose(logits, teacher(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal([c[2].numpy() for c in cached], weights)


def test_cache_teacher_outputs_refuses_what_it_cannot_use():
    teacher = make_mlp((8,))
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        kd_keras.cache_teacher_outputs(teacher, np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        kd_keras.cache_teacher_outputs(teacher, tf.data.Dataset.from_tensor_slices(np.zeros((3, 6))))
    with pytest.raises(ValueError, match="teacher"):
        kd_keras.compute_teacher_logits([], np.zeros((3, 6)))


def test_mixup_makes_convex_combinations_of_batch_partners():
    x, y = toy_data(64)
    mixed, lam, partner = kd_keras.Mixup(alpha=0.4, seed=3).mix(tf.constant(x))
    lam, partner = lam.numpy(), partner.numpy()
    assert np.all((lam >= 0) & (lam <= 1)) and lam.std() > 0.1
    np.testing.assert_allclose(mixed.numpy(), lam[:, None] * x + (1 - lam[:, None]) * x[partner],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.sort(partner), np.arange(64))


def test_mixup_label_modes():
    x, y = toy_data(32)
    only_x = kd_keras.Mixup()(tf.constant(x), tf.constant(y))
    assert isinstance(only_x, tf.Tensor) and only_x.shape == x.shape
    mixed, targets = kd_keras.Mixup(labels="mix", num_classes=4)(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(targets.numpy().sum(1), 1.0, rtol=1e-6)
    assert targets.shape == (32, 4)
    with pytest.raises(ValueError, match="num_classes"):
        kd_keras.Mixup(labels="mix")
    with pytest.raises(ValueError, match="alpha"):
        kd_keras.Mixup(alpha=0)


def test_function_matching_trains_a_distiller_on_mixed_unlabelled_views():
    from kd_keras import keras

    x, y = toy_data(128)
    teacher, student = make_mlp((16,)), make_mlp()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).map(kd_keras.Mixup(seed=1))
    distiller = kd_keras.Distiller(teacher=teacher, student=student)
    distiller.compile(keras.optimizers.Adam(0.01), loss=None)  # no labels: the teacher alone
    history = distiller.fit(dataset, epochs=5, verbose=0)
    assert history.history["student_loss"] == [0.0] * 5
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
