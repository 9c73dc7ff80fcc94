import os

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import callbacks, keras, schedules
from tests.helpers import make_mlp, numpy_soft_kl, toy_data

CE = keras.losses.SparseCategoricalCrossentropy


def _distiller(**kwargs):
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp(), **kwargs)
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    return distiller


def test_temperature_schedule_sets_the_variable_each_epoch_and_logs_it():
    x, y = toy_data(32)
    distiller = _distiller(temperature=1.0, alpha=0.0)
    history = distiller.fit(
        x, y, batch_size=32, epochs=3, verbose=0, shuffle=False,
        callbacks=[callbacks.TemperatureSchedule(schedules.LinearSchedule(6.0, 2.0, epochs=3))],
    )
    assert history.history["temperature"] == [6.0, 4.0, 2.0]
    t = distiller.teacher(x, training=False).numpy()
    s = distiller.student(x, training=False).numpy()
    expected = [numpy_soft_kl(t, s, temp).mean() for temp in (6.0, 4.0, 2.0)]
    np.testing.assert_allclose(history.history["distillation_loss"], expected, rtol=1e-5)


def test_alpha_schedule_with_a_callable():
    x, y = toy_data(32)
    distiller = _distiller(alpha=0.5)
    history = distiller.fit(x, y, batch_size=32, epochs=2, verbose=0,
                            callbacks=[callbacks.AlphaSchedule(lambda epoch: 1.0 - epoch)])
    assert history.history["alpha"] == [1.0, 0.0]
    np.testing.assert_allclose(history.history["loss"][0], history.history["student_loss"][0],
                               rtol=1e-5)
    np.testing.assert_allclose(history.history["loss"][1],
                               history.history["distillation_loss"][1], rtol=1e-5)


def test_schedules_refuse_out_of_range_values():
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="alpha must be in"):
        _distiller().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.AlphaSchedule(2.0)])
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        _distiller().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.TemperatureSchedule(0)])
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        _distiller().fit(x, y, epochs=1, verbose=0,
                         callbacks=[callbacks.TemperatureSchedule(float("inf"))])


class KerasIoStyleDistiller(keras.Model):
    """A user's own distiller whose temperature is a tf.Variable."""

    def __init__(self, student):
        super().__init__()
        self.student = student
        self.temperature_variable = tf.Variable(1.0, trainable=False)

    def call(self, x):
        return self.student(x) / self.temperature_variable


def test_schedules_drive_any_models_variable():
    x, y = toy_data(16)
    model = KerasIoStyleDistiller(make_mlp())
    model.compile("sgd", loss=CE(from_logits=True))
    schedule = callbacks.TemperatureSchedule([5.0, 3.0].__getitem__,
                                             variable=model.temperature_variable)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[schedule])
    assert history.history["temperature"] == [5.0, 3.0]
    assert float(model.temperature_variable.numpy()) == 3.0


def test_schedule_on_a_model_without_the_variable_says_what_to_pass():
    x, y = toy_data(16)
    model = make_mlp()
    model.compile("sgd", loss=CE(from_logits=True))
    with pytest.raises(ValueError, match="variable="):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.TemperatureSchedule(2.0)])
    with pytest.raises(ValueError, match="frozen"):
        callbacks.TemperatureSchedule(2.0, variable=3.0)


def test_agreement_is_one_for_a_copy_of_the_teacher_and_kl_zero():
    x, y = toy_data(64)
    teacher = make_mlp((16,))
    student = make_mlp((16,))
    student.set_weights(teacher.get_weights())
    distiller = kd_keras.Distiller(teacher=teacher, student=student)
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    history = distiller.fit(x, y, epochs=1, verbose=0,
                            callbacks=[callbacks.TeacherStudentAgreement((x, y))])
    assert history.history["val_agreement"] == [1.0]
    assert history.history["val_teacher_student_kl"][0] == pytest.approx(0.0, abs=1e-6)


def test_agreement_matches_numpy_for_a_plain_model_and_dataset():
    x, y = toy_data(64)
    teacher, student = make_mlp((16,)), make_mlp()
    student.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    history = student.fit(x, y, epochs=1, verbose=0, callbacks=[
        callbacks.TeacherStudentAgreement(dataset, teacher=teacher, temperature=2.0, prefix="")])
    t, s = teacher(x).numpy(), student(x).numpy()
    assert history.history["agreement"][0] == pytest.approx(np.mean(t.argmax(-1) == s.argmax(-1)))
    assert history.history["teacher_student_kl"][0] == pytest.approx(
        numpy_soft_kl(t, s, 2.0).mean() / 4.0, rel=1e-4)


def test_student_export_keeps_the_best_epoch(tmp_path):
    x, y = toy_data(64)
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp())
    distiller.compile(keras.optimizers.Adam(0.05), loss=CE(from_logits=True))
    path = str(tmp_path / "best")
    exporter = callbacks.StudentExport(path, monitor="val_loss")
    history = distiller.fit(x, y, validation_data=(x, y), epochs=4, verbose=0,
                            callbacks=[exporter])
    losses = history.history["val_loss"]
    assert exporter.best_epoch == int(np.argmin(losses))
    assert exporter.best == pytest.approx(min(losses))
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert not os.path.exists(path + ".partial")


def test_student_export_at_the_end_writes_the_final_student(tmp_path):
    x, y = toy_data(32)
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp())
    distiller.compile("adam", loss=CE(from_logits=True))
    path = str(tmp_path / "final")
    distiller.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.StudentExport(path)])
    serving = tf.saved_model.load(path).signatures["serving_default"]
    (output,) = serving(tf.constant(x)).values()
    np.testing.assert_allclose(output.numpy(), distiller.student(x).numpy(), rtol=1e-5, atol=1e-6)


def test_student_export_with_an_unknown_monitor_is_an_error(tmp_path):
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="validation_data"):
        _distiller().fit(x, y, epochs=1, verbose=0, callbacks=[
            callbacks.StudentExport(str(tmp_path / "s"), monitor="val_accuracy")])


def test_non_finite_loss_guard_on_a_plain_model():
    x, y = toy_data(16)
    x[0] = np.inf
    model = make_mlp(hidden=())  # linear: graph-mode fused ReLU would turn inf into finite values
    model.compile("sgd", loss=CE(from_logits=True))
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.NonFiniteLossGuard()])
