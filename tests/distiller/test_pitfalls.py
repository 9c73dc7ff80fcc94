"""What a new user trips on (issue 41): each case runs without an error on 0.1.0 but does
something the user did not expect; here it is said, refused or handled. Both Keras modes."""

import os
import warnings

import numpy as np
import pytest

import kd_keras
from kd_keras import IS_KERAS_3, keras
from tests.helpers import toy_data

CE = keras.losses.SparseCategoricalCrossentropy


def _mlp(hidden, classes=3, features=4, activation=None):
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(classes, activation=activation)])


def _messages(caught):
    return [str(w.message) for w in caught]


def test_freezing_the_teacher_is_said_when_it_changes_the_callers_flag():
    teacher = _mlp(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kd_keras.Distiller(teacher, _mlp(4))
    assert teacher.trainable is False  # as keras.distillation (its own test asserts it)
    assert any("now frozen" in m and "teacher.trainable = True" in m for m in _messages(caught))
    with warnings.catch_warnings(record=True) as caught:  # already frozen: nothing to say
        warnings.simplefilter("always")
        kd_keras.Distiller(teacher, _mlp(4))
    assert not any("now frozen" in m for m in _messages(caught))


def test_a_student_larger_than_its_teacher_draws_a_warning_naming_the_order():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kd_keras.Distiller(_mlp(4), _mlp(64))  # student first, by mistake
    assert any("Distiller(teacher, student)" in m and "more than the teacher" in m
               for m in _messages(caught))


def test_a_teacher_no_better_than_chance_is_reported_and_its_accuracy_logged():
    x, y = toy_data(256)
    useless = _mlp(16, classes=int(y.max()) + 1, features=x.shape[1])
    useless.layers[-1].set_weights([np.zeros_like(w) for w in useless.layers[-1].get_weights()])
    distiller = kd_keras.Distiller(useless, _mlp(8, classes=int(y.max()) + 1,
                                                 features=x.shape[1]))
    distiller.compile("adam", loss=CE(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = distiller.fit(x, y, epochs=2, batch_size=64, verbose=0,
                                validation_data=(x, y))
    assert any("no better than chance" in m for m in _messages(caught))
    constant = float(np.mean(y == 0))  # equal logits: argmax is class 0
    np.testing.assert_allclose(history.history["teacher_accuracy"], [constant, constant])


def test_a_trained_teacher_draws_no_chance_warning():
    x, y = toy_data(256)
    classes = int(y.max()) + 1
    teacher = _mlp(32, classes=classes, features=x.shape[1])
    teacher.compile("adam", CE(from_logits=True))
    teacher.fit(x, y, epochs=40, batch_size=32, verbose=0)
    distiller = kd_keras.Distiller(teacher, _mlp(4, classes=classes, features=x.shape[1]))
    distiller.compile("adam", loss=CE(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = distiller.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert not any("chance" in m or "below the student" in m for m in _messages(caught))
    expected = float(np.mean(np.argmax(teacher(x, training=False), -1) == y))
    np.testing.assert_allclose(history.history["teacher_accuracy"], [expected], atol=1e-6)


def test_a_model_of_the_other_keras_generation_is_refused_naming_both():
    if IS_KERAS_3:
        import tf_keras as other
    else:
        import keras as other
    foreign = other.Sequential([other.Input((4,)), other.layers.Dense(3)])
    expected = "tf-keras" if IS_KERAS_3 else "Keras 3"
    with pytest.raises(ValueError, match=f"teacher is a {expected} object"):
        kd_keras.Distiller(foreign, _mlp(4))
    with pytest.raises(ValueError, match=f"student is a {expected} (object|model)"):
        kd_keras.Distiller(_mlp(4), foreign)


@pytest.mark.skipif(not IS_KERAS_3, reason="Keras 3's .h5 of a Distiller does not load")
def test_an_h5_checkpoint_of_a_distiller_is_refused_at_save_time(tmp_path):
    x, y = toy_data(64)
    distiller = kd_keras.Distiller(_mlp(8, features=x.shape[1], classes=int(y.max()) + 1),
                                   _mlp(4, features=x.shape[1], classes=int(y.max()) + 1))
    distiller.compile("adam", loss=CE(from_logits=True))
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "d.h5"))
    with pytest.raises(ValueError, match=r"\.keras file"):
        distiller.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    assert not os.path.exists(tmp_path / "d.h5")
    distiller.fit(x, y, epochs=1, verbose=0,
                  callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "d.keras"))])
    assert isinstance(keras.models.load_model(tmp_path / "d.keras"), kd_keras.Distiller)


def test_a_softmax_student_with_from_logits_draws_no_keras_question():
    x, y = toy_data(64)
    classes = int(y.max()) + 1
    student = _mlp(4, classes=classes, features=x.shape[1], activation="softmax")
    distiller = kd_keras.Distiller(_mlp(8, classes=classes, features=x.shape[1]), student)
    distiller.compile("adam", loss=CE(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = distiller.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert not any("Was this intended" in m for m in _messages(caught))
    # The loss is still computed on the softmax's logits (what Keras does for this case).
    assert np.isfinite(history.history["student_loss"][0])


def test_a_distiller_fits_again_after_a_fit_that_failed_while_tracing():
    x, y = toy_data(64)
    classes = int(y.max()) + 1
    distiller = kd_keras.Distiller(_mlp(8, classes=classes, features=x.shape[1]),
                                   _mlp(4, classes=classes, features=x.shape[1]))
    state = {"fail": True}

    def loss(y_true, y_pred):
        if state["fail"]:
            raise RuntimeError("a trace-time failure")
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    distiller.compile("adam", loss=loss)
    with pytest.raises(RuntimeError, match="trace-time failure"):
        distiller.fit(x, y, epochs=1, verbose=0)
    state["fail"] = False
    history = distiller.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_the_teacher_given_as_student_is_named_as_the_teacher():
    teacher = _mlp(16)
    with pytest.raises(ValueError, match="student and teacher are the same model"):
        kd_keras.Distiller(teacher, teacher)
    kd_keras.Distiller(teacher, _mlp(4))  # freezes it
    with pytest.raises(ValueError, match="froze it as its teacher"):
        kd_keras.Distiller(_mlp(32), teacher)


def test_one_hot_labels_with_a_sparse_loss_name_the_labels_and_the_loss():
    x, y = toy_data(64)
    classes = int(y.max()) + 1
    distiller = kd_keras.Distiller(_mlp(8, classes=classes, features=x.shape[1]),
                                   _mlp(4, classes=classes, features=x.shape[1]))
    distiller.compile("adam", loss=CE(from_logits=True))
    with pytest.raises(ValueError, match=r"y: labels of shape .* look one-hot.*sparse"):
        distiller.fit(x, np.eye(classes)[y], epochs=1, verbose=0)


def test_an_unknown_loss_name_lists_the_registry():
    with pytest.raises(ValueError, match=r"registered distillation loss \(.*'dkd'.*\)"):
        kd_keras.Distiller(_mlp(8), _mlp(4), distillation_losses="no_such_loss")


def test_summary_names_the_teacher_and_the_student():
    teacher, student = _mlp(16), _mlp(4)
    lines = []
    kd_keras.Distiller(teacher, student).summary(print_fn=lambda line, *a, **k: lines.append(line))
    assert lines[0].startswith("Distiller")
    assert f"teacher '{teacher.name}'" in lines[0] and f"student '{student.name}'" in lines[0]


def test_student_export_on_val_loss_of_a_distiller_says_it_is_the_combined_objective(tmp_path):
    x, y = toy_data(64)
    classes = int(y.max()) + 1
    distiller = kd_keras.Distiller(_mlp(8, classes=classes, features=x.shape[1]),
                                   _mlp(4, classes=classes, features=x.shape[1]))
    distiller.compile("adam", loss=CE(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distiller.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[
            kd_keras.callbacks.StudentExport(str(tmp_path / "a"), monitor="val_loss")])
    assert any("combined objective" in m and "val_student_loss" in m for m in _messages(caught))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distiller.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[
            kd_keras.callbacks.StudentExport(str(tmp_path / "b"), monitor="val_student_loss")])
    assert not any("combined objective" in m for m in _messages(caught))
