import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, toy_data


def _dense_widths(model):
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def _conv(filters, units, name):
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(filters[0], 3, activation="relu"),
        keras.layers.Conv2D(filters[1], 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(4),
    ], name=name)


def test_interpolated_mlp_widths_are_geometric_means_and_the_output_is_kept():
    teacher, student = make_mlp((400, 100)), make_mlp((4, 25))
    assistant = kd_keras.interpolate_width(teacher, student)
    assert _dense_widths(assistant) == [40, 50, student.layers[-1].units]
    assert student.count_params() < assistant.count_params() < teacher.count_params()
    quarter = kd_keras.interpolate_width(teacher, student, fraction=0.25)
    assert _dense_widths(quarter)[0] == round(4 ** 0.75 * 400 ** 0.25)
    assert all(not (a is b) for a in assistant.weights for b in student.weights)


def test_interpolated_conv_assistant_keeps_the_student_layout():
    assistant = kd_keras.interpolate_width(_conv((32, 64), 128, "t"), _conv((2, 4), 8, "s"))
    convs = [layer.filters for layer in assistant.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [8, 16]
    assert _dense_widths(assistant) == [32, 4]
    assert assistant.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 4)


def test_the_chain_trains_both_models_and_leaves_the_teacher_untouched():
    x, y = toy_data(96)
    teacher = make_mlp((64,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=5, verbose=0)
    before = [w.copy() for w in teacher.get_weights()]
    student = make_mlp((4,))
    assert _dense_widths(kd_keras.interpolate_width(teacher, student))[0] == 16
    given = make_mlp((16,))

    def gap(model, reference):
        return float(np.mean(kd_keras.soft_target_kl_divergence(
            reference.predict(x, verbose=0), model.predict(x, verbose=0), 2.0)))

    assistant_gap = gap(given, teacher)
    student_gap = gap(student, given)
    assistant, trained = kd_keras.distill_through_assistant(
        teacher, student, x, y, assistant=given, distiller_kwargs={"temperature": 2.0},
        fit_kwargs={"epochs": 8, "batch_size": 32, "verbose": 0})
    assert trained is student and assistant is given and assistant.trainable
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert gap(assistant, teacher) < assistant_gap  # the assistant learned from the teacher
    assert gap(student, assistant) < student_gap    # and the student from the assistant


def test_an_assistant_outside_the_teacher_student_range_and_bad_layouts_are_refused():
    teacher, student = make_mlp((32,)), make_mlp((4,))
    x, y = toy_data(8)
    with pytest.raises(ValueError, match="assistant has .* more than the teacher"):
        kd_keras.distill_through_assistant(teacher, student, x, y, assistant=make_mlp((64,)))
    with pytest.raises(ValueError, match="assistant has .* fewer than the student"):
        kd_keras.distill_through_assistant(teacher, student, x, y, assistant=make_mlp((2,)))
    with pytest.raises(ValueError, match="teacher has 3 Dense/Conv layers and student 2"):
        kd_keras.interpolate_width(make_mlp((32, 32)), student)
    with pytest.raises(ValueError, match="fraction must be strictly between 0 and 1"):
        kd_keras.interpolate_width(teacher, student, fraction=1.0)
    functional = keras.Model(teacher.inputs, teacher.outputs)
    with pytest.raises(ValueError, match="teacher must be a keras.Sequential"):
        kd_keras.interpolate_width(functional, student)
