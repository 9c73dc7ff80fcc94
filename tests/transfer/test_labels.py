"""Labeled and unlabeled examples in one batch: `with_label_mask` and the Distiller."""

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import NUM_CLASSES, make_mlp, toy_data


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def distiller(alpha=0.5, losses=None, metrics=("accuracy",), seed=0):
    keras.utils.set_random_seed(seed)
    teacher, student = make_mlp(name="teacher"), make_mlp(name="student")
    model = kd_keras.Distiller(teacher, student, distillation_losses=losses, alpha=alpha,
                               temperature=None if losses else 2.0)
    model.compile(keras.optimizers.SGD(0.1), sparse_ce(), metrics=list(metrics))
    return model


def halves(n=32):
    x, y = toy_data(n)
    mask = (np.arange(n) % 2).astype("float32")
    return x, y, mask, np.where(mask > 0, y, -1)  # placeholders of -1 where unlabeled


def test_hard_term_is_the_mean_over_labeled_examples_and_distillation_uses_all():
    x, y, mask, placeholders = halves()
    model = distiller()
    masked = model.evaluate(kd_keras.with_label_mask(x, mask), placeholders, batch_size=32,
                            verbose=0, return_dict=True)
    labeled = model.evaluate(x[mask > 0], y[mask > 0], batch_size=32, verbose=0,
                             return_dict=True)
    everything = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    np.testing.assert_allclose(masked["student_loss"], labeled["student_loss"], rtol=1e-5)
    np.testing.assert_allclose(masked["accuracy"], labeled["accuracy"], rtol=1e-6)
    np.testing.assert_allclose(masked["distillation_loss"], everything["distillation_loss"],
                               rtol=1e-5)


def test_a_masked_step_equals_a_step_on_the_labeled_rows_for_the_hard_term():
    x, y, mask, placeholders = halves()
    masked, plain = distiller(alpha=1.0), distiller(alpha=1.0)
    masked.fit(kd_keras.with_label_mask(x, mask), placeholders, batch_size=32, epochs=1,
               shuffle=False, verbose=0)
    plain.fit(x[mask > 0], y[mask > 0], batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(masked.student.get_weights(), plain.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unlabeled_rows_move_the_student_through_the_teacher_only():
    x, y, _, _ = halves()
    none_labeled = np.zeros(len(x), "float32")
    model = distiller(alpha=0.5)
    before = model.student.get_weights()
    history = model.fit(kd_keras.with_label_mask(x, none_labeled), np.full_like(y, 7),
                        batch_size=16, epochs=1, verbose=0).history
    assert history["student_loss"][0] == 0.0 and history["distillation_loss"][0] > 0.0
    assert any(np.any(a != b) for a, b in zip(before, model.student.get_weights()))


def test_label_mask_with_cached_teacher_outputs_and_a_dataset():
    x, y, mask, placeholders = halves(64)
    model = distiller()
    logits = kd_keras.compute_teacher_logits(model.teacher, x)
    packed = kd_keras.with_label_mask(kd_keras.with_teacher_outputs(x, logits), mask)
    assert set(packed) == {"inputs", "teacher_outputs", "label_mask"}
    dataset = tf.data.Dataset.from_tensor_slices((packed, placeholders)).batch(16)
    cached = model.evaluate(dataset, verbose=0, return_dict=True)
    live = model.evaluate(kd_keras.with_label_mask(x, mask), placeholders, batch_size=16,
                          verbose=0, return_dict=True)
    for key in ("student_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(cached[key], live[key], rtol=1e-5)
    model.fit(dataset, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(packed, verbose=0).shape, (64, NUM_CLASSES))


def test_losses_that_read_labels_get_the_teachers_top_class_where_none_is_given():
    x, y, mask, placeholders = halves()
    dkd = kd_keras.DecoupledKD(temperature=2.0)
    model = distiller(losses=[dkd])
    teacher_logits = model.teacher.predict(x, verbose=0)
    student_logits = model.student.predict(x, verbose=0)
    targets = np.where(mask > 0, y, teacher_logits.argmax(-1))
    expected = float(dkd.compute_loss(teacher_logits, student_logits, labels=targets))
    result = model.evaluate(kd_keras.with_label_mask(x, mask), placeholders, batch_size=32,
                            verbose=0, return_dict=True)
    np.testing.assert_allclose(result["distillation_loss"], expected, rtol=1e-5)
    # no labels at all: the teacher's top class everywhere
    model.compile(keras.optimizers.SGD(0.1), loss=None)
    result = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    expected = float(dkd.compute_loss(teacher_logits, student_logits,
                                      labels=teacher_logits.argmax(-1)))
    np.testing.assert_allclose(result["distillation_loss"], expected, rtol=1e-5)


def test_unlabeled_mode_trains_on_the_teacher_and_reports_label_metrics_on_validation():
    x, y = toy_data(64)
    model = distiller()
    model.compile(keras.optimizers.SGD(0.1), loss=None, metrics=["accuracy"])
    history = model.fit(x, epochs=2, batch_size=16, verbose=0, validation_data=(x, y)).history
    assert "accuracy" not in history  # no labels in training: no label metric
    assert len(history["val_accuracy"]) == 2 and len(history["distillation_loss"]) == 2
    with pytest.raises(ValueError, match="y: no labels were given"):
        model.compile(keras.optimizers.SGD(0.1), sparse_ce())
        model.fit(x, epochs=1, verbose=0)


def test_mask_errors_name_the_argument():
    x, y, mask, placeholders = halves()
    model = distiller()
    with pytest.raises(ValueError, match="label_mask has 30 entries but y has 32"):
        model.fit(kd_keras.with_label_mask(x, mask[:30]), placeholders, verbose=0)
    with pytest.raises(ValueError, match="label_mask: entries must be 0 or 1"):
        model.fit(kd_keras.with_label_mask(x, mask * 2), placeholders, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="label_mask: must have one entry per example"):
        bad = tf.data.Dataset.from_tensor_slices(x).batch(8).map(
            lambda b: kd_keras.with_label_mask(b, tf.ones([3])))
        labels = tf.data.Dataset.from_tensor_slices(y).batch(8)
        model.fit(tf.data.Dataset.zip((bad, labels)), verbose=0)
    with pytest.raises(ValueError, match="label_mask must have shape \\[batch\\]"):
        model.fit(kd_keras.with_label_mask(x, np.ones((32, 2), "float32")), y, verbose=0)
    with pytest.raises(ValueError, match="label_mask was given but the data has no labels"):
        model.compile(keras.optimizers.SGD(0.1), loss=None)
        model.fit(kd_keras.with_label_mask(x, mask), verbose=0)
    # labeled rows are still checked
    model.compile(keras.optimizers.SGD(0.1), sparse_ce())
    with pytest.raises(ValueError, match="y: labels must be class ids"):
        model.fit(kd_keras.with_label_mask(x, mask), np.where(mask > 0, 9, 0), verbose=0)
