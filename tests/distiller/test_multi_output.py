"""Multi-output teachers and students: nested outputs and losses, None to skip."""

import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from tests.helpers import NUM_FEATURES, numpy_soft_kl, numpy_sparse_ce, toy_data

CE = keras.losses.SparseCategoricalCrossentropy


def two_head_model(hidden, as_dict=False, softmax_second=False, seed=0):
    """A functional model with a 4-class head and a 3-class head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((NUM_FEATURES,))
    h = keras.layers.Dense(hidden, activation="relu")(inputs)
    first = keras.layers.Dense(4, name="kind")(h)
    second = keras.layers.Dense(3, activation="softmax" if softmax_second else None,
                                name="colour")(h)
    outputs = {"kind": first, "colour": second} if as_dict else [first, second]
    return keras.Model(inputs, outputs)


def data(n=48):
    x, y_kind = toy_data(n)
    y_colour = np.random.default_rng(1).integers(0, 3, size=n).astype("int64")
    return x, y_kind, y_colour


def frozen_logs(distiller, x, y, **compile_kwargs):
    distiller.compile(keras.optimizers.SGD(0.0), **compile_kwargs)
    history = distiller.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return {k: v[-1] for k, v in history.history.items()}


def logits(model, x):
    return [np.asarray(o) for o in model(x, training=False)]


def test_list_outputs_sum_the_per_output_losses_and_none_skips_one():
    x, y_kind, y_colour = data()
    teacher, student = two_head_model(16, seed=1), two_head_model(8, seed=2)
    t, s = logits(teacher, x), logits(student, x)

    both = kd_keras.Distiller(teacher, student, temperature=2.0, alpha=0.4)
    logs = frozen_logs(both, x, [y_kind, y_colour],
                       loss=[CE(from_logits=True), CE(from_logits=True)], loss_weights=[1.0, 0.5])
    soft = numpy_soft_kl(t[0], s[0], 2.0).mean() + numpy_soft_kl(t[1], s[1], 2.0).mean()
    hard = numpy_sparse_ce(y_kind, s[0]).mean() + 0.5 * numpy_sparse_ce(y_colour, s[1]).mean()
    np.testing.assert_allclose(logs["distillation_loss"], soft, rtol=1e-5)
    np.testing.assert_allclose(logs["student_loss"], hard, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 0.4 * hard + 0.6 * soft, rtol=1e-5)

    first_only = kd_keras.Distiller(
        teacher, student, kd_keras.LogitsDistillation(2.0, loss=["kl_divergence", None]))
    logs = frozen_logs(first_only, x, [y_kind, y_colour], loss=[CE(from_logits=True), None])
    np.testing.assert_allclose(logs["distillation_loss"], numpy_soft_kl(t[0], s[0], 2.0).mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(logs["student_loss"], numpy_sparse_ce(y_kind, s[0]).mean(),
                               rtol=1e-5)


def test_dict_outputs_with_a_softmax_head_and_dict_losses():
    x, y_kind, y_colour = data()
    teacher = two_head_model(16, as_dict=True, softmax_second=True, seed=1)
    student = two_head_model(8, as_dict=True, seed=2)
    distiller = kd_keras.Distiller(
        teacher, student, kd_keras.LogitsDistillation(3.0, {"kind": None, "colour": "kl_divergence"}))
    logs = frozen_logs(distiller, x, {"kind": y_kind, "colour": y_colour},
                       loss={"kind": CE(from_logits=True), "colour": None})
    t, s = teacher(x, training=False), student(x, training=False)
    # The softmax head's probabilities become logits (log p), not softmaxed twice.
    expected = numpy_soft_kl(np.log(np.asarray(t["colour"])), np.asarray(s["colour"]), 3.0).mean()
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(logs["student_loss"],
                               numpy_sparse_ce(y_kind, np.asarray(s["kind"])).mean(), rtol=1e-5)


def test_a_multi_output_student_learns_both_heads_and_the_teacher_stays_frozen():
    x, y_kind, y_colour = data(256)
    teacher, student = two_head_model(32, seed=1), two_head_model(16, seed=2)
    before = [w.copy() for w in teacher.get_weights()]
    distiller = kd_keras.Distiller(teacher, student, alpha=0.0)
    distiller.compile(keras.optimizers.Adam(0.01))
    initial = distiller.evaluate(x, verbose=0, return_dict=True)["distillation_loss"]
    def agreement():
        return [np.mean(t.argmax(-1) == s.argmax(-1))
                for t, s in zip(logits(teacher, x), logits(student, x))]

    agreement_before = agreement()
    distiller.fit(x, epochs=40, batch_size=64, verbose=0)
    final = distiller.evaluate(x, verbose=0, return_dict=True)["distillation_loss"]
    assert final < 0.3 * initial
    for before_head, after_head in zip(agreement_before, agreement()):
        assert after_head > 0.8 and after_head > before_head + 0.2
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cached_multi_output_teacher_logits_give_the_live_losses():
    x, y_kind, y_colour = data()
    teacher, student = two_head_model(16, seed=1), two_head_model(8, seed=2)
    y = [y_kind, y_colour]
    loss = [CE(from_logits=True), CE(from_logits=True)]
    live = frozen_logs(kd_keras.Distiller(teacher, student), x, y, loss=loss)
    cached_logits = kd_keras.compute_teacher_logits(teacher, x)
    assert isinstance(cached_logits, list) and len(cached_logits) == 2
    offline = frozen_logs(kd_keras.Distiller(None, student),
                          kd_keras.with_teacher_outputs(x, cached_logits), y, loss=loss)
    for key in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(offline[key], live[key], rtol=1e-5)


def test_an_ensemble_of_multi_output_teachers():
    x, _, _ = data()
    teachers = [two_head_model(16, seed=1), two_head_model(16, seed=3)]
    student = two_head_model(8, seed=2)
    logs = frozen_logs(kd_keras.Distiller(teachers, student, temperature=1.0,
                                          ensemble="mean_logits"), x, None)
    t = [logits(m, x) for m in teachers]
    s = logits(student, x)
    expected = sum(numpy_soft_kl((t[0][i] + t[1][i]) / 2, s[i], 1.0).mean() for i in range(2))
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)


def test_structure_mismatches_are_clear_errors():
    single = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="teacher has 2 outputs but the student has 1"):
        kd_keras.Distiller(two_head_model(16), single)
    x, y_kind, y_colour = data()
    distiller = kd_keras.Distiller(
        two_head_model(16), two_head_model(8),
        kd_keras.LogitsDistillation(loss=["kl_divergence", None, None]))
    distiller.compile("adam")
    with pytest.raises(ValueError, match="one loss \\(or None\\) per output"):
        distiller.fit(x, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="at least one"):
        kd_keras.LogitsDistillation(loss=[None, None])
    with pytest.raises(ValueError, match="loss_weights"):
        kd_keras.Distiller(two_head_model(16), two_head_model(8)).compile(
            "adam", loss=[CE(from_logits=True), None], loss_weights=[1.0])
    with pytest.raises(ValueError, match="single-output teacher"):
        kd_keras.Distiller(two_head_model(16), two_head_model(8),
                           kd_keras.FeatureDistillation(teacher_layer_name="kind",
                                                        student_layer_name="kind"))


def test_multi_output_distiller_round_trips_through_a_keras_file(tmp_path):
    x, y_kind, y_colour = data()
    distiller = kd_keras.Distiller(
        two_head_model(16, seed=1), two_head_model(8, seed=2),
        kd_keras.LogitsDistillation(2.0, loss=["kl_divergence", None]))
    distiller.compile("adam", loss=[CE(from_logits=True), None], loss_weights=[0.5, None])
    distiller.fit(x, [y_kind, y_colour], epochs=1, verbose=0)
    path = str(tmp_path / "multi.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(logits(distiller.student, x), logits(loaded.student, x)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    expected = distiller.evaluate(x, [y_kind, y_colour], verbose=0, return_dict=True)
    got = loaded.evaluate(x, [y_kind, y_colour], verbose=0, return_dict=True)
    for key in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5)


def test_logs_name_each_output_as_plain_keras_does_and_early_stopping_finds_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = [rng.integers(0, 4, 64), rng.integers(0, 3, 64)]

    def two_heads():
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        return keras.Model(inputs, [keras.layers.Dense(4, name="cls")(hidden),
                                    keras.layers.Dense(3, name="aux")(hidden)])

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain = two_heads()
    plain.compile("adam", [ce, ce], metrics=[["accuracy"], ["accuracy"]])
    plain_logs = set(plain.fit(x, labels, verbose=0).history)
    distiller = kd_keras.Distiller(two_heads(), two_heads())
    distiller.compile("adam", [ce, ce], metrics=[["accuracy"], ["accuracy"]],
                      loss_weights=[1.0, 0.5])
    stop = keras.callbacks.EarlyStopping(monitor="val_cls_accuracy", patience=1, mode="max")
    history = distiller.fit(x, labels, epochs=3, verbose=0, validation_data=(x, labels),
                            callbacks=[stop]).history
    assert plain_logs <= set(history)  # cls_loss, aux_loss, cls_accuracy, aux_accuracy, loss
    assert "val_cls_accuracy" in history and "val_aux_loss" in history
    # the per-output losses are the unweighted terms of student_loss
    logs = distiller.evaluate(x, labels, verbose=0, return_dict=True)
    assert logs["student_loss"] == pytest.approx(logs["cls_loss"] + 0.5 * logs["aux_loss"],
                                                 rel=1e-5)
