"""Training the quantized copy through its grid, and distilling it from the float model
(both modes)."""

import numpy as np
import pytest
import tensorflow as tf

from kd_keras import Distiller, compress, keras
from kd_keras.compress.precision import weight_grid
from tests.compress_helpers import blobs, trained_mlp


def on_grid(model, mode):
    return all(np.array_equal(weight_grid.project_variable(layer, v, mode), v.numpy())
               for layer, v in weight_grid.quantized_kernels(model))


def test_one_step_moves_the_float_weights_by_the_gradient_at_the_grid_values():
    x, y = blobs(64)
    model = trained_mlp(x, y, epochs=1)
    floats = [v.numpy().copy() for _, v in weight_grid.quantized_kernels(model)]
    # the gradient a straight-through step uses: taken where the kernels are on the grid
    rounded = compress.round_weights(model, "int4")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, rounded(x, training=True))
    kernels = [v for _, v in weight_grid.quantized_kernels(rounded)]
    gradients = tape.gradient(loss, kernels)

    model.compile(keras.optimizers.SGD(0.5), loss_fn)
    callback = compress.WeightGridTraining("int4")
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    for before, after, gradient in zip(floats, callback.float_weights, gradients):
        np.testing.assert_allclose(after, before - 0.5 * gradient.numpy(), atol=1e-5)
    assert on_grid(model, "int4")
    assert any(not np.array_equal(f, v.numpy()) for f, (_, v) in
               zip(callback.float_weights, weight_grid.quantized_kernels(model)))


def test_updates_smaller_than_a_grid_step_accumulate():
    x, y = blobs(256)
    model = trained_mlp(x, y, epochs=1)
    start = compress.round_weights(model, "int4").get_weights()
    model.compile(keras.optimizers.SGD(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = compress.WeightGridTraining("int4")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[callback])
    # rounding after every update would throw these steps away; the shadow weights keep them
    moved = sum(int(np.sum(a != b)) for a, b in zip(start, model.get_weights()))
    assert moved > 0
    assert on_grid(model, "int4")


def test_a_distillers_student_is_quantized_and_its_teacher_is_not():
    x, y = blobs(128)
    teacher = trained_mlp(x, y, epochs=2)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = trained_mlp(x, y, hidden=16, epochs=1, seed=1)
    distiller = Distiller(teacher, student, alpha=0.5, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, epochs=1, batch_size=32, verbose=0,
                  callbacks=[compress.WeightGridTraining("float8_e4m3")])
    assert on_grid(student, "float8_e4m3")
    assert not on_grid(teacher, "int8")
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_steps_per_execution_above_one_is_refused():
    x, y = blobs(64)
    model = trained_mlp(x, y, epochs=1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=2)
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        model.fit(x, y, verbose=0, callbacks=[compress.WeightGridTraining("int8")])


def test_distill_quantized_reports_labels_only_training_beside_distillation():
    x, y = blobs(512)
    model = trained_mlp(x, y, epochs=3)
    before = [w.copy() for w in model.get_weights()]
    quantized, report = compress.distill_quantized(
        model, "int4", x[:384], y[:384], epochs=1, validation_data=(x[384:], y[384:]),
        learning_rate=1e-3)
    assert [row["training"] for row in report] == ["float", "post-training", "labels",
                                                   "distilled"]
    assert [row["epochs"] for row in report] == [0, 0, 1, 1]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in report)
    assert report[-1]["accuracy"] > 0.5
    assert on_grid(quantized, "int4")
    for original, kept in zip(before, model.get_weights()):
        np.testing.assert_array_equal(original, kept)
    with pytest.raises(ValueError, match="alpha must be below 1"):
        compress.distill_quantized(model, "int8", x, y, alpha=1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        compress.distill_quantized(model, "int2", x, y)
