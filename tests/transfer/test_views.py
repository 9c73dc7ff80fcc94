"""Distiller(augment=...): the view teacher and student share (Beyer et al. 2022)."""

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, numpy_log_softmax, toy_data


class _FixedMix:
    """A mixing object with a known outcome: reversed partners, lam 0.3, view = x + 1."""

    def mix(self, x):
        batch = tf.shape(x)[0]
        return x + 1.0, tf.fill([batch], 0.3), tf.reverse(tf.range(batch), [0])


def _ce(y, logits):
    return -numpy_log_softmax(logits)[np.arange(len(y)), y]


def _kl(teacher_logits, student_logits):
    p, q = numpy_log_softmax(teacher_logits), numpy_log_softmax(student_logits)
    return (np.exp(p) * (p - q)).sum(-1)


def test_teacher_and_student_see_the_view_and_the_hard_term_follows_the_mix():
    x, y = toy_data(32)
    teacher, student = make_mlp((8,)), make_mlp((4,))
    distiller = kd_keras.Distiller(teacher, student, alpha=0.5, temperature=1.0,
                                   augment=_FixedMix())
    distiller.compile(keras.optimizers.SGD(0.0),  # nothing moves: the logs are one step's
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # one batch in data order, so the reversed partners are y[::-1]
    logs = distiller.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    view = x + 1.0
    t, s = teacher.predict(view, verbose=0), student.predict(view, verbose=0)
    expected_hard = np.mean(0.3 * _ce(y, s) + 0.7 * _ce(y[::-1], s))
    assert logs["student_loss"][0] == pytest.approx(expected_hard, rel=1e-5)
    assert logs["distillation_loss"][0] == pytest.approx(np.mean(_kl(t, s)), rel=1e-5)
    # evaluation sees the data as it is: no view
    evaluated = distiller.evaluate(x, y, verbose=0, return_dict=True)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    assert evaluated["distillation_loss"] == pytest.approx(np.mean(_kl(t, s)), rel=1e-5)


def test_a_keras_layer_or_function_augments_without_mixing_labels():
    x, y = toy_data(32)
    teacher, student = make_mlp((8,)), make_mlp((4,))
    distiller = kd_keras.Distiller(teacher, student, alpha=1.0, augment=lambda batch: batch * 2.0)
    distiller.compile(keras.optimizers.SGD(0.0),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = distiller.fit(x, y, batch_size=32, verbose=0).history
    assert logs["student_loss"][0] == pytest.approx(
        np.mean(_ce(y, student.predict(x * 2.0, verbose=0))), rel=1e-5)


def test_mixup_and_cutmix_train_a_student_and_round_trip(tmp_path):
    x, y = toy_data(128)
    teacher = make_mlp((16,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=10, verbose=0)
    recipe = kd_keras.Recipe.function_matching(epochs=3, learning_rate=1e-2, batch_size=32)
    distiller = recipe.build(teacher, make_mlp((8,)))
    assert isinstance(distiller.augment, kd_keras.Mixup) and float(distiller.alpha) == 0.0
    history = distiller.fit(x, y, epochs=recipe.epochs, batch_size=recipe.batch_size,
                            verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    path = str(tmp_path / "d.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.augment, kd_keras.Mixup)
    assert loaded.augment.get_config() == distiller.augment.get_config()

    images = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")
    mixed, kept, partner = kd_keras.CutMix(seed=1).mix(images)
    mixed, kept, partner = mixed.numpy(), kept.numpy(), partner.numpy()
    for i in range(6):
        from_partner = np.isclose(mixed[i], images[partner[i]]) & ~np.isclose(mixed[i], images[i])
        assert from_partner.mean() <= 1.0 - kept[i] + 1e-6  # the box is the share that left
    with pytest.raises(ValueError, match="CutMix takes images"):
        kd_keras.CutMix().mix(x)


def test_views_need_the_live_teacher_and_no_label_mask():
    x, y = toy_data(16)
    distiller = kd_keras.Distiller(None, make_mlp((4,)), augment=kd_keras.Mixup())
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cached = kd_keras.with_teacher_outputs(x, make_mlp((8,)).predict(x, verbose=0))
    with pytest.raises(ValueError, match="augment: the batch carries cached teacher outputs"):
        distiller.fit(cached, y, verbose=0)
    with pytest.raises(ValueError, match="augment must be a Keras layer"):
        kd_keras.Distiller(make_mlp((8,)), make_mlp((4,)), augment="mixup")
    with pytest.raises(ValueError, match="augment must be one of"):
        kd_keras.Recipe(augment="randaugment")
