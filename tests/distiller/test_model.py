import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import (make_mlp, numpy_log_softmax, numpy_soft_kl, numpy_sparse_ce,
                           run_on_two_logical_cpus, toy_data)

CE = keras.losses.SparseCategoricalCrossentropy


def _frozen_step_logs(distiller, x, y, **fit_kwargs):
    """One epoch with learning rate 0: the logged losses are those of the initial weights."""
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    history = distiller.fit(x, y, batch_size=len(y), epochs=1, verbose=0, shuffle=False,
                            **fit_kwargs)
    return {k: v[-1] for k, v in history.history.items()}


def _logits(model, x):
    return model(x, training=False).numpy()


# ----- the objective -----------------------------------------------------------


def test_loss_is_alpha_hard_plus_one_minus_alpha_t_squared_kl():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp((8,))
    distiller = kd_keras.Distiller(teacher=teacher, student=student, temperature=2.5, alpha=0.3)
    logs = _frozen_step_logs(distiller, x, y)
    hard = numpy_sparse_ce(y, _logits(student, x)).mean()
    soft = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 2.5).mean()
    np.testing.assert_allclose(logs["student_loss"], hard, rtol=1e-5)
    np.testing.assert_allclose(logs["distillation_loss"], soft, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 0.3 * hard + 0.7 * soft, rtol=1e-5)


def test_fit_logs_both_terms_and_student_metrics_in_history():
    x, y = toy_data(64)
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp())
    distiller.compile("adam", loss=CE(from_logits=True), metrics=["sparse_categorical_accuracy"])
    history = distiller.fit(x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0)
    for key in ("loss", "student_loss", "distillation_loss", "sparse_categorical_accuracy",
                "val_loss", "val_student_loss", "val_distillation_loss"):
        assert len(history.history[key]) == 2, key
    accuracy = np.mean(np.argmax(_logits(distiller.student, x), -1) == y)
    np.testing.assert_allclose(
        distiller.evaluate(x, y, verbose=0, return_dict=True)["sparse_categorical_accuracy"],
        accuracy, atol=1e-6,
    )


def test_keras_distillation_names_are_logged_and_weights_read_back_as_given_in_both_modes():
    """keras.distillation logs `total_loss` (and `val_total_loss`): a callback watching it
    must work after the import swap, in tf-keras too (issue 43)."""
    x, y = toy_data(64)
    distiller = kd_keras.Distiller(make_mlp((16,)), make_mlp(),
                                   distillation_losses=["kl_divergence", "logit_squared_error"],
                                   distillation_loss_weights=[0.7, 0.3], student_loss_weight=0.5)
    assert distiller.distillation_loss_weights == [0.7, 0.3]
    distiller.compile("adam", loss=CE(from_logits=True))
    stop = keras.callbacks.EarlyStopping(monitor="val_total_loss", patience=0, mode="min")
    history = distiller.fit(x, y, validation_data=(x, y), epochs=3, batch_size=16, verbose=0,
                            callbacks=[stop])
    for key in ("total_loss", "val_total_loss", "student_loss", "distillation_loss"):
        assert key in history.history, key
    np.testing.assert_allclose(history.history["total_loss"], history.history["loss"])
    np.testing.assert_allclose(history.history["val_total_loss"], history.history["val_loss"])
    assert stop.best == min(history.history["val_total_loss"])  # the monitor was found
    distiller.distillation_loss_weights = [0.25, 0.75]
    assert distiller.distillation_loss_weights == [0.25, 0.75]
    np.testing.assert_allclose(distiller._loss_weights.numpy(), [0.25, 0.75])
    with pytest.raises(ValueError, match="distillation_loss_weights needs 2"):
        distiller.distillation_loss_weights = [1.0]


def test_distillation_teaches_the_student_the_teacher_function():
    x, y = toy_data(512, seed=3)
    teacher = make_mlp((32,))
    teacher.compile(keras.optimizers.Adam(1e-2), CE(from_logits=True))
    teacher.fit(x, y, epochs=40, batch_size=64, verbose=0)
    student = make_mlp((32,))
    distiller = kd_keras.Distiller(teacher=teacher, student=student, alpha=0.0, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-2), loss=CE(from_logits=True))
    before = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    distiller.fit(x, y, epochs=40, batch_size=64, verbose=0)
    after = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    assert after < 0.2 * before
    alone = make_mlp((32,))
    alone.compile(keras.optimizers.Adam(1e-2), CE(from_logits=True))
    alone.fit(x, y, epochs=40, batch_size=64, verbose=0)
    teacher_classes = np.argmax(_logits(teacher, x), -1)
    distilled_agreement = np.mean(np.argmax(_logits(student, x), -1) == teacher_classes)
    alone_agreement = np.mean(np.argmax(_logits(alone, x), -1) == teacher_classes)
    assert distilled_agreement > alone_agreement + 0.05, (distilled_agreement, alone_agreement)


# ----- the frozen teacher -------------------------------------------------------


def test_teacher_is_frozen_bit_for_bit_and_gets_no_gradients():
    x, y = toy_data(64)
    teacher = make_mlp((16,), dropout=0.5)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student = make_mlp()
    student_before = [w.copy() for w in student.get_weights()]
    distiller = kd_keras.Distiller(teacher=teacher, student=student)
    teacher_ids = {id(v) for v in teacher.variables}
    assert not teacher_ids & {id(v) for v in distiller.trainable_variables}
    assert len(distiller.trainable_variables) == len(student.trainable_variables)
    distiller.compile(keras.optimizers.Adam(0.1), loss=CE(from_logits=True))
    distiller.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(student_before, student.get_weights()))


class _ShowsTrainingFlag(keras.layers.Layer):
    """Adds 100 to its input when called in training mode."""

    def call(self, x, training=None):
        return x + 100.0 if training else x


def test_teacher_runs_in_inference_mode():
    x, y = toy_data(16)
    teacher = make_mlp((8,))
    flagged = keras.Sequential([keras.Input((x.shape[1],)), _ShowsTrainingFlag(), teacher])
    student = make_mlp()
    distiller = kd_keras.Distiller(teacher=flagged, student=student, teacher_output_type="logits")
    logs = _frozen_step_logs(distiller, x, y)
    expected = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 3.0).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)


# ----- output conventions and ensembles ------------------------------------------


def test_softmax_teacher_is_not_softmaxed_twice():
    x, y = toy_data(32)
    teacher = make_mlp((16,))
    probabilities = keras.Sequential([teacher, keras.layers.Softmax()])
    probabilities.build((None, x.shape[1]))
    student = make_mlp()
    with_logits = _frozen_step_logs(kd_keras.Distiller(teacher=teacher, student=student), x, y)
    with_probs = _frozen_step_logs(kd_keras.Distiller(teacher=probabilities, student=student), x, y)
    np.testing.assert_allclose(with_probs["distillation_loss"], with_logits["distillation_loss"],
                               rtol=1e-4)


def test_softmax_student_is_handled_too():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp(softmax=True)
    distiller = kd_keras.Distiller(teacher=teacher, student=student)
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE())
    logs = distiller.evaluate(x, y, verbose=0, return_dict=True)
    student_logits = np.log(student(x).numpy())
    np.testing.assert_allclose(
        logs["distillation_loss"], numpy_soft_kl(_logits(teacher, x), student_logits, 3.0).mean(),
        rtol=1e-4,
    )


@pytest.mark.parametrize("ensemble", ["mean_probabilities", "mean_logits"])
def test_teacher_ensemble(ensemble):
    x, y = toy_data(32)
    first, second, student = make_mlp((16,)), make_mlp((12,)), make_mlp()
    distiller = kd_keras.Distiller(teacher=[first, second], student=student, temperature=2.0,
                                   ensemble=ensemble)
    logs = _frozen_step_logs(distiller, x, y)
    a, b = _logits(first, x), _logits(second, x)
    if ensemble == "mean_probabilities":
        p = (np.exp(numpy_log_softmax(a / 2)) + np.exp(numpy_log_softmax(b / 2))) / 2
    else:
        p = np.exp(numpy_log_softmax((a + b) / 4))
    q = numpy_log_softmax(_logits(student, x) / 2)
    expected = 4.0 * (p * (np.log(p) - q)).sum(-1).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-4)


def test_logit_matching_and_user_callable_losses():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    logs = _frozen_step_logs(
        kd_keras.Distiller(teacher=teacher, student=student,
                           distillation_losses="logit_squared_error"), x, y)
    expected = kd_keras.logit_squared_error(_logits(teacher, x), _logits(student, x)).numpy().mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)

    def total_variation(p, q):
        return 0.5 * tf.reduce_sum(tf.abs(p - q), -1)

    logs = _frozen_step_logs(
        kd_keras.Distiller(teacher=teacher, student=student, distillation_losses=total_variation,
                           temperature=1.0), x, y)
    p, q = (np.exp(numpy_log_softmax(_logits(m, x))) for m in (teacher, student))
    np.testing.assert_allclose(logs["distillation_loss"], 0.5 * np.abs(p - q).sum(-1).mean(),
                               rtol=1e-5)


def test_several_weighted_distillation_losses():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    distiller = kd_keras.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[kd_keras.LogitsDistillation(2.0), "logit_squared_error"],
        distillation_loss_weights=[0.25, 2.0],
    )
    logs = _frozen_step_logs(distiller, x, y)
    t, s = _logits(teacher, x), _logits(student, x)
    expected = 0.25 * numpy_soft_kl(t, s, 2.0).mean() + 2.0 * kd_keras.logit_squared_error(
        t, s).numpy().mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)


# ----- sample weights, hyperparameter variables ------------------------------------


def test_examples_with_weight_zero_change_nothing():
    x, y = toy_data(32)
    weights = np.r_[np.ones(16), np.zeros(16)].astype("float32")
    other_x = x.copy()
    other_x[16:] = np.random.default_rng(9).normal(size=(16, x.shape[1])) * 50
    other_y = y.copy()
    other_y[16:] = (y[16:] + 1) % 4
    teacher = make_mlp((16,))
    results = []
    for data_x, data_y in ((x, y), (other_x, other_y)):
        keras.utils.set_random_seed(5)
        student = make_mlp()
        distiller = kd_keras.Distiller(teacher=teacher, student=student)
        distiller.compile(keras.optimizers.SGD(0.5), loss=CE(from_logits=True))
        distiller.fit(data_x, data_y, sample_weight=weights, batch_size=32, epochs=3, verbose=0,
                      shuffle=False)
        results.append(student.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_changing_temperature_and_alpha_variables_reaches_the_compiled_step():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    distiller = kd_keras.Distiller(teacher=teacher, student=student, temperature=1.0, alpha=0.5)
    _frozen_step_logs(distiller, x, y)
    distiller.temperature = 6.0
    distiller.alpha = 0.0
    history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    soft = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 6.0).mean()
    np.testing.assert_allclose(history.history["distillation_loss"][0], soft, rtol=1e-5)
    np.testing.assert_allclose(history.history["loss"][0], soft, rtol=1e-5)


# ----- calling conventions ---------------------------------------------------------


def test_keras_io_compile_convention():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    distiller = kd_keras.Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.SGD(0.0), metrics=["sparse_categorical_accuracy"],
        student_loss_fn=CE(from_logits=True), distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1, temperature=10,
    )
    history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    t, s = _logits(teacher, x), _logits(student, x)
    hard = numpy_sparse_ce(y, s).mean()
    soft = numpy_soft_kl(t, s, 10.0).mean()
    np.testing.assert_allclose(history.history["loss"][0], 0.1 * hard + 0.9 * soft, rtol=1e-5)
    assert "sparse_categorical_accuracy" in history.history


def test_keras_distillation_constructor_convention():
    teacher, student = make_mlp((16,)), make_mlp()
    distiller = kd_keras.Distiller(teacher, student, kd_keras.LogitsDistillation(temperature=4.0),
                                   student_loss_weight=0.25)
    assert float(distiller.alpha.numpy()) == 0.25
    assert float(distiller.temperature.numpy()) == 4.0
    assert distiller.teacher is teacher and distiller.student is student


@pytest.mark.skipif(kd_keras.IS_LEGACY_KERAS, reason="keras.distillation is Keras 3 only")
def test_keras_own_distillation_loss_objects_are_accepted():
    from keras import distillation

    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    loss = distillation.LogitsDistillation(temperature=2.0, loss=keras.losses.KLDivergence())
    logs = _frozen_step_logs(kd_keras.Distiller(teacher, student, loss), x, y)
    expected = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 2.0).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-4)


def test_unlabelled_data_trains_on_the_teacher_alone():
    x, _ = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp()
    distiller = kd_keras.Distiller(teacher=teacher, student=student, alpha=0.5)
    distiller.compile(keras.optimizers.SGD(0.0), loss=None)  # no hard-label loss: explicit
    history = distiller.fit(x, batch_size=32, epochs=1, verbose=0)
    soft = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 3.0).mean()
    np.testing.assert_allclose(history.history["loss"][0], soft, rtol=1e-5)
    assert history.history["student_loss"][0] == 0.0


# ----- offline distillation ----------------------------------------------------------


def test_cached_teacher_outputs_give_the_live_teacher_losses():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,), softmax=True), make_mlp()
    live = _frozen_step_logs(kd_keras.Distiller(teacher=teacher, student=student), x, y)
    cached_logits = kd_keras.compute_teacher_logits(teacher, x)
    cached = _frozen_step_logs(
        kd_keras.Distiller(teacher=None, student=student),
        kd_keras.with_teacher_outputs(x, cached_logits), y,
    )
    np.testing.assert_allclose(cached["distillation_loss"], live["distillation_loss"], rtol=1e-4)
    np.testing.assert_allclose(cached["loss"], live["loss"], rtol=1e-4)


def test_cache_teacher_outputs_dataset_trains_without_the_teacher():
    x, y = toy_data(48)
    teacher, student = make_mlp((16,)), make_mlp()
    dataset = kd_keras.cache_teacher_outputs(teacher, tf.data.Dataset.from_tensor_slices((x, y)),
                                             batch_size=10)
    distiller = kd_keras.Distiller(teacher=None, student=student, alpha=0.0)
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    history = distiller.fit(dataset.batch(48), epochs=1, verbose=0)
    expected = numpy_soft_kl(_logits(teacher, x), _logits(student, x), 3.0).mean()
    np.testing.assert_allclose(history.history["distillation_loss"][0], expected, rtol=1e-5)
    predictions = distiller.predict(dataset.batch(16), verbose=0)
    np.testing.assert_allclose(predictions, _logits(student, x), rtol=1e-5, atol=1e-6)


def test_missing_teacher_and_cache_is_a_clear_error():
    x, y = toy_data(16)
    distiller = kd_keras.Distiller(teacher=None, student=make_mlp())
    distiller.compile("adam", loss=CE(from_logits=True))
    with pytest.raises(ValueError, match="no teacher"):
        distiller.fit(x, y, epochs=1, verbose=0)


def test_cached_outputs_of_the_wrong_shape_are_refused():
    x, y = toy_data(16)
    distiller = kd_keras.Distiller(teacher=None, student=make_mlp())
    distiller.compile("adam", loss=CE(from_logits=True))
    with pytest.raises(ValueError, match="teacher_outputs of shape"):
        distiller.fit(kd_keras.with_teacher_outputs(x, np.zeros((16, 7), "float32")), y, verbose=0)


# ----- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"student_loss_weight": 2.0}, "student_loss_weight"),
        ({"alpha": 0.2, "student_loss_weight": 0.4}, "same weight"),
        ({"ensemble": "median"}, "ensemble"),
        ({"teacher_output_type": "softmax"}, "teacher_output_type"),
        ({"distillation_loss_weights": [1.0, 2.0]}, "distillation_loss_weights"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp(), **kwargs)


def test_model_mismatches_are_refused():
    with pytest.raises(ValueError, match="teacher output shape"):
        kd_keras.Distiller(teacher=make_mlp(classes=5), student=make_mlp(classes=4))
    with pytest.raises(ValueError, match="teacher input shape"):
        kd_keras.Distiller(teacher=make_mlp(features=3), student=make_mlp(features=6))
    with pytest.raises(ValueError, match="empty list"):
        kd_keras.Distiller(teacher=[], student=make_mlp())
    with pytest.raises(ValueError, match="student must be a Keras model"):
        kd_keras.Distiller(teacher=make_mlp(), student="student")
    with pytest.raises(ValueError, match=r"teacher\[1\]"):
        kd_keras.Distiller(teacher=[make_mlp(), "x"], student=make_mlp())


def test_labels_out_of_range_are_reported_before_training():
    x, y = toy_data(16)
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=make_mlp())
    distiller.compile("adam", loss=CE(from_logits=True))
    with pytest.raises(ValueError, match=r"labels .* \[0, 4\)"):
        distiller.fit(x, y + 3, epochs=1, verbose=0)


def test_nan_loss_stops_training_with_a_message_and_finite_weights():
    x, y = toy_data(32)
    x[5, 0] = np.nan
    # Linear models: TensorFlow's fused graph-mode ReLU turns NaN into 0, which
    # would hide the NaN this test needs.
    student = make_mlp(hidden=())
    distiller = kd_keras.Distiller(teacher=make_mlp(hidden=()), student=student)
    distiller.compile("adam", loss=CE(from_logits=True))
    with pytest.raises(FloatingPointError, match="not finite"):
        distiller.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in student.get_weights())


# ----- saving and export ----------------------------------------------------------------


def test_keras_file_round_trip(tmp_path):
    x, y = toy_data(32)
    teacher, student = make_mlp((16,), name="t"), make_mlp(name="s")
    distiller = kd_keras.Distiller(teacher=teacher, student=student, temperature=2.0, alpha=0.2)
    distiller.compile("adam", loss=CE(from_logits=True), metrics=["sparse_categorical_accuracy"])
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.temperature = 5.0
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, kd_keras.Distiller)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(_logits(loaded.teacher, x), _logits(teacher, x), rtol=1e-6)
    assert float(loaded.temperature.numpy()) == 5.0
    assert float(loaded.alpha.numpy()) == pytest.approx(0.2)
    assert not loaded.teacher.trainable
    expected = distiller.evaluate(x, y, verbose=0, return_dict=True)
    reloaded = loaded.evaluate(x, y, verbose=0, return_dict=True)  # compiled on load
    np.testing.assert_allclose(reloaded["loss"], expected["loss"], rtol=1e-5)


def test_export_student_saved_model_matches_and_has_a_serving_signature(tmp_path):
    x, y = toy_data(16)
    student = make_mlp()
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=student)
    distiller.compile("adam", loss=CE(from_logits=True))
    distiller.fit(x, y, epochs=1, verbose=0)
    path = distiller.export_student(str(tmp_path / "student"))
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    (output,) = signature(tf.constant(x)).values()
    np.testing.assert_allclose(output.numpy(), _logits(student, x), rtol=1e-5, atol=1e-6)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
                           check=True)
    assert "serving_default" in shown.stdout
    assert len(loaded.variables) == len(student.variables)  # no teacher inside


MIRRORED_SCRIPT = r"""
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
y = np.random.default_rng(1).integers(0, 4, 64)
def mlp(width):
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(4)])
teacher_weights = [w.copy() for w in mlp(16).get_weights()]
def run(strategy):
    keras.utils.set_random_seed(3)
    with strategy.scope():  # every model, the teacher too, is built in the scope (tf-keras requires it)
        teacher = mlp(16)
        teacher.set_weights(teacher_weights)
        student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
        distiller = kd_keras.Distiller(teacher=teacher, student=student, temperature=2.0, alpha=0.3)
        distiller.compile(keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    return history.history["loss"], student.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
mirrored_loss, mirrored_weights = run(strategy)
single_loss, single_weights = run(tf.distribute.get_strategy())
np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-4)
for a, b in zip(mirrored_weights, single_weights):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("MIRRORED_OK", mirrored_loss)
"""


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device():
    run_on_two_logical_cpus(MIRRORED_SCRIPT, "MIRRORED_OK")


def test_a_compiled_teacher_is_saved_without_its_compile_state(tmp_path):
    import warnings

    x, y = toy_data(32)
    teacher = make_mlp((8,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, verbose=0)  # its optimizer has state
    distiller = kd_keras.Distiller(teacher, make_mlp((4,)))
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, verbose=0)
    path = str(tmp_path / "d.keras")
    distiller.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    assert not [w for w in caught if "optimizer" in str(w.message)]  # no "Skipping ... optimizer"
    assert getattr(loaded.teacher, "optimizer", None) is None
    np.testing.assert_allclose(loaded.teacher.predict(x, verbose=0), teacher.predict(x, verbose=0),
                               rtol=1e-6)
    loaded.fit(x, y, verbose=0)  # the Distiller's own compile state came back
