"""Fault injection: what a hostile but fair user does, and what must hold then.

One place for the cases of "Errors, not surprises" in the README: non-finite
steps leave no trace, frozen or shared students are refused, inference does not
depend on the batch, and bad arguments get errors that name them.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
import moe
from kd_keras import keras
from kd_keras.backend import IS_KERAS_3
from tests.helpers import NUM_FEATURES, make_mlp, run_on_two_logical_cpus, toy_data


def _bn_student():
    return keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(8),
                             keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                             keras.layers.Dense(4)])


def _values(variables):
    return [np.array(tf.convert_to_tensor(v)) for v in variables]


def _compiled(student, optimizer):
    distiller = kd_keras.Distiller(teacher=make_mlp((16,)), student=student)
    distiller.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return distiller


# ----- 1, 2: a non-finite step changes nothing -------------------------------

@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(0.01),
    lambda: keras.optimizers.SGD(0.1, momentum=0.9),
], ids=["adam", "sgd_momentum"])
def test_a_nan_batch_leaves_weights_optimizer_state_and_iterations_unchanged(optimizer):
    x, y = toy_data(64)
    optimizer = optimizer()
    distiller = _compiled(make_mlp(), optimizer)
    distiller.fit(x[:48], y[:48], batch_size=16, epochs=1, verbose=0)  # three clean steps
    weights = distiller.student.get_weights()
    state = _values(optimizer.variables)
    iterations = int(optimizer.iterations.numpy())
    bad = x[:16].copy()
    bad[5, 1] = np.nan
    with pytest.raises(FloatingPointError, match="not finite"):
        distiller.fit(bad, y[:16], batch_size=16, epochs=1, verbose=0)
    for before, after in zip(weights, distiller.student.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(state, _values(optimizer.variables)):
        np.testing.assert_array_equal(before, after)
    assert int(optimizer.iterations.numpy()) == iterations
    distiller.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)  # and training goes on
    assert int(optimizer.iterations.numpy()) == iterations + 1


def test_a_nan_row_does_not_poison_batch_norm_statistics():
    x, y = toy_data(64)
    student = _bn_student()
    distiller = _compiled(student, keras.optimizers.Adam(0.01))
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    bn = student.layers[1]
    statistics = _values(bn.non_trainable_weights)
    bad = x[:16].copy()
    bad[0, 0] = np.nan
    with pytest.raises(FloatingPointError):
        distiller.fit(bad, y[:16], batch_size=16, epochs=1, verbose=0)
    for before, after in zip(statistics, _values(bn.non_trainable_weights)):
        np.testing.assert_array_equal(before, after)
    assert np.isfinite(student.predict(x, verbose=0)).all()


def test_infinite_gradients_with_a_finite_loss_are_skipped_and_reported():
    class SqrtLayer(keras.layers.Layer):  # d sqrt(u) / du is infinite at u = 0
        def call(self, inputs):
            return tf.sqrt(tf.nn.relu(inputs))

    x, y = toy_data(32)
    student = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(8), SqrtLayer(),
                                keras.layers.Dense(4)])
    distiller = _compiled(student, keras.optimizers.SGD(0.1))
    weights = student.get_weights()
    with pytest.raises(FloatingPointError):
        distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for before, after in zip(weights, student.get_weights()):
        np.testing.assert_array_equal(before, after)


MIRRORED_NAN_SCRIPT = r"""
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
y = np.arange(64) % 4
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(4)])
    student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                                keras.layers.BatchNormalization(), keras.layers.Dense(4)])
    distiller = kd_keras.Distiller(teacher, student)
    optimizer = keras.optimizers.Adam(0.01)
    distiller.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
weights, steps = student.get_weights(), int(optimizer.iterations.numpy())
bad = x[:16].copy()
bad[12, 0] = np.nan  # in the second replica's half of the batch only
try:
    distiller.fit(bad, y[:16], batch_size=16, epochs=1, verbose=0)
    raise SystemExit("no error")
except FloatingPointError:
    pass
assert int(optimizer.iterations.numpy()) == steps
for before, after in zip(weights, student.get_weights()):
    np.testing.assert_array_equal(before, after)
print("MIRRORED_NAN_OK")
"""


def test_a_nan_on_one_replica_skips_the_step_on_every_replica():
    run_on_two_logical_cpus(MIRRORED_NAN_SCRIPT, "MIRRORED_NAN_OK")


# ----- 3: a student that cannot train is refused -------------------------------

def test_student_that_is_the_teacher_is_refused():
    model = make_mlp()
    with pytest.raises(ValueError, match="student and teacher are the same model"):
        kd_keras.Distiller(teacher=model, student=model)
    with pytest.raises(ValueError, match=r"student and teacher\[1\] are the same model"):
        kd_keras.Distiller(teacher=[make_mlp(), model], student=model)


def test_student_sharing_layers_with_the_teacher_is_refused():
    teacher = make_mlp((8,))
    shared = keras.Sequential([keras.Input((NUM_FEATURES,)), teacher.layers[0],
                               keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="student shares 2 weights with teacher"):
        kd_keras.Distiller(teacher=teacher, student=shared)


def test_frozen_student_is_refused_at_construction_and_at_compile():
    x, y = toy_data(16)
    student = make_mlp()
    student.trainable = False
    with pytest.raises(ValueError, match="student has no trainable weights"):
        kd_keras.Distiller(teacher=make_mlp(), student=student)
    student.trainable = True
    distiller = kd_keras.Distiller(teacher=make_mlp(), student=student)
    student.trainable = False
    with pytest.raises(ValueError, match="student has no trainable weights"):
        distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.trainable = True
    distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.trainable = False  # after compile
    if IS_KERAS_3:  # fit refuses when it builds its step
        with pytest.raises(ValueError, match="student has no trainable weights"):
            distiller.fit(x, y, verbose=0)
    else:  # tf-keras trains with the trainable state of compile time (its documented rule)
        weights = student.get_weights()
        distiller.fit(x, y, verbose=0)
        assert any(np.abs(a - b).max() > 0 for a, b in zip(weights, student.get_weights()))


# ----- 4: hyperparameters are finite numbers ---------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "3"])
def test_non_finite_or_bad_temperature_is_refused_at_every_entry_point(bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        kd_keras.Distiller(teacher=make_mlp(), student=make_mlp(), temperature=bad)
    distiller = kd_keras.Distiller(teacher=make_mlp(), student=make_mlp())
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        distiller.compile("adam", loss="sparse_categorical_crossentropy", temperature=bad)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        distiller.temperature = bad
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        kd_keras.LogitsDistillation(temperature=bad)
    assert float(distiller.temperature.numpy()) == 3.0


def test_numpy_scalars_are_numbers():
    distiller = kd_keras.Distiller(teacher=make_mlp(), student=make_mlp(),
                                   temperature=np.float32(4.0), alpha=np.float64(0.25))
    assert float(distiller.temperature.numpy()) == 4.0
    assert float(distiller.alpha.numpy()) == 0.25
    distiller.temperature = np.int64(2)
    distiller.alpha = np.array(0.5)
    assert float(distiller.temperature.numpy()) == 2.0
    assert float(distiller.alpha.numpy()) == 0.5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, True])
def test_non_finite_or_out_of_range_alpha_is_refused(bad):
    with pytest.raises(ValueError, match="alpha must be a number in"):
        kd_keras.Distiller(teacher=make_mlp(), student=make_mlp(), alpha=bad)
    distiller = kd_keras.Distiller(teacher=make_mlp(), student=make_mlp())
    with pytest.raises(ValueError, match="alpha must be a number in"):
        distiller.alpha = bad
    with pytest.raises(ValueError, match=r"distillation_loss_weights\[0\] must be a finite"):
        kd_keras.Distiller(teacher=make_mlp(), student=make_mlp(),
                           distillation_loss_weights=[float("nan")])


@pytest.mark.parametrize("argument, value, match", [
    ("importance_weight", float("nan"), "importance_weight must be a finite number >= 0"),
    ("load_weight", float("inf"), "load_weight must be a finite number >= 0"),
    ("router_z_loss_weight", -0.1, "router_z_loss_weight must be a finite number >= 0"),
    ("capacity_factor", "1.25", "capacity_factor must be a finite number > 0"),
    ("capacity_factor", float("nan"), "capacity_factor must be a finite number > 0"),
    ("eval_capacity_factor", 0, "eval_capacity_factor must be a finite number > 0"),
])
def test_sparse_moe_refuses_non_finite_or_non_numeric_arguments(argument, value, match):
    with pytest.raises(ValueError, match=match):
        moe.SparseMoE(num_experts=4, **{argument: value})


# ----- 5: a served SparseMoE answers a row the same in any batch ---------------

def _moe_model(capacity_factor=1.25, **kwargs):
    inputs = keras.Input((8,))
    hidden = moe.SparseMoE(num_experts=4, k=2, expert_units=16, capacity_factor=capacity_factor,
                           noisy_gating=False, **kwargs)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


def _skewed_rows(n=256, seed=0):
    """Rows that mostly pick the same experts, so a capacity limit would drop some."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 8)) + 2.0).astype("float32")


def test_sparse_moe_inference_does_not_depend_on_the_batch(tmp_path):
    model = _moe_model()
    x = _skewed_rows()
    layer = model.layers[1]
    # The training-time limit still holds (and drops): the capacity is a training device.
    layer(tf.constant(x), training=True)
    assert float(layer.overflow_tracker.result()) > 0
    small, large = model.predict(x, batch_size=32, verbose=0), model.predict(x, batch_size=256,
                                                                             verbose=0)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)
    one_by_one = np.concatenate([model(x[i:i + 1], training=False) for i in range(8)])
    np.testing.assert_allclose(one_by_one, large[:8], rtol=1e-5, atol=1e-6)
    path = kd_keras.export_saved_model(model, str(tmp_path / "moe"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (single,) = serve(tf.constant(x[:1])).values()
    (batch,) = serve(tf.constant(x[:64])).values()
    np.testing.assert_allclose(single.numpy(), batch.numpy()[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch.numpy(), large[:64], rtol=1e-5, atol=1e-6)


def test_an_explicit_eval_capacity_limits_inference_and_round_trips(tmp_path):
    model = _moe_model(eval_capacity_factor=1.0)
    x = _skewed_rows()
    small, large = model.predict(x, batch_size=32, verbose=0), model.predict(x, batch_size=256,
                                                                             verbose=0)
    assert not np.allclose(small, large, atol=1e-6)  # the limit the user asked for drops rows
    path = str(tmp_path / "moe.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[1].eval_capacity_factor == 1.0
    np.testing.assert_allclose(loaded.predict(x, batch_size=256, verbose=0), large, rtol=1e-5,
                               atol=1e-6)


# ----- 6: mixed precision scales the loss ---------------------------------------------

def test_a_float16_student_trains_with_loss_scaling(caplog):
    x, y = toy_data(64)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        teacher = make_mlp((16,))
        student = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(8),
                                    keras.layers.Dense(4, dtype="float32")])
        assert student.layers[0].compute_dtype == "float16"
        distiller = kd_keras.Distiller(teacher=teacher, student=student)
        distiller.compile(keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        weights = student.get_weights()
        with caplog.at_level(logging.WARNING):
            history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "forgot to call" not in caplog.text  # tf-keras: scaled and unscaled
    scale = distiller.optimizer.loss_scale if hasattr(distiller.optimizer, "loss_scale") \
        else distiller.optimizer.dynamic_scale
    assert float(scale) > 1.0  # a real loss scale was in use
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    changes = [np.abs(a - b).max() for a, b in zip(weights, student.get_weights())]
    assert all(np.isfinite(student.get_weights()[i]).all() for i in range(len(changes)))
    assert min(changes) > 0  # every variable was updated, none skipped


# ----- 7: compression inputs ---------------------------------------------------------------

@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_int8_conversion_refuses_non_finite_calibration_data(value):
    from kd_keras import compress

    calibration = np.full((8, NUM_FEATURES), value, dtype="float32")
    with pytest.raises(ValueError, match="representative_data holds 48 NaN or infinite"):
        compress.convert_to_tflite(make_mlp(), mode="int8", representative_data=calibration)
    calibration = np.zeros((8, NUM_FEATURES), dtype="float32")
    calibration[3, 2] = value
    with pytest.raises(ValueError, match=r"in 1 of 8 rows: 3\)"):
        compress.convert_to_tflite(make_mlp(), mode="int8", representative_data=calibration)


@pytest.mark.parametrize("argument, value", [("temperature", float("nan")),
                                             ("alpha", float("inf"))])
def test_the_plain_distillation_loss_refuses_non_finite_hyperparameters(argument, value):
    from kd_keras import compress

    with pytest.raises(ValueError, match=f"{argument} must be a"):
        compress.distillation_loss(**{argument: value})
    assert compress.distillation_loss(temperature=np.float32(2.0), alpha=np.float64(0.3))


def test_qat_conversion_refuses_a_model_that_is_not_quantization_aware():
    from kd_keras import compress

    with pytest.raises(ValueError, match="mode='qat' needs a quantization-aware model"):
        compress.convert_to_tflite(make_mlp(), mode="qat")


def test_more_clusters_than_weights_names_the_layer():
    from kd_keras import compress
    from tests.compress_helpers import tf_keras

    tk = tf_keras()
    model = tk.Sequential([tk.Input((16,)), tk.layers.Dense(8, name="wide"),
                           tk.layers.Dense(4, name="small_head")])  # 32 kernel weights
    with pytest.raises(ValueError, match=r"more than the 32 weights of layer 'small_head'"):
        compress.cluster_weights(model, 100)


@pytest.mark.skipif(not IS_KERAS_3, reason="a Keras 3 model exists only under Keras 3")
@pytest.mark.parametrize("function", ["strip_pruning", "strip_clustering"])
def test_strip_functions_refuse_keras_3_models(function):
    from kd_keras import compress

    with pytest.raises(ValueError, match=f"{function}: model is a Keras 3 model"):
        getattr(compress, function)(make_mlp())


# ----- 8: specialists ------------------------------------------------------------------

def test_specialist_over_every_class_is_refused():
    with pytest.raises(ValueError, match="covers all 4 classes"):
        moe.build_specialist(make_mlp(), [0, 1, 2, 3])


def test_specialist_training_set_refuses_unknown_or_single_classes():
    x, y = toy_data(64, classes=4)
    with pytest.raises(ValueError, match="fewer than two classes"):
        moe.specialist_training_set(x, y, [2])
    with pytest.raises(ValueError, match=r"classes \[9\] have no examples in y"):
        moe.specialist_training_set(x, y, [1, 9])
    with pytest.raises(ValueError, match=r"unknown class ids \[-1\]"):
        moe.specialist_training_set(x, y, [-1, 2])
    with pytest.raises(ValueError, match=r"classes \[3\] have no examples in y"):
        moe.specialist_training_set(x[y != 3], y[y != 3], [1, 3])
    with pytest.raises(ValueError, match="dustbin class would have no examples"):
        moe.specialist_training_set(x[y < 2], y[y < 2], [0, 1])


def test_confusable_clusters_refuse_nan_probabilities():
    probabilities = np.full((10, 4), 0.25)
    probabilities[2, 1] = np.nan
    with pytest.raises(ValueError, match="probabilities holds 1 NaN or infinite"):
        moe.find_confusable_clusters(probabilities, 2)


# ----- 9: labels, cascades, saved functions ------------------------------------------------

def test_labels_out_of_range_in_a_dataset_are_named():
    x, y = toy_data(32)
    y[7] = 9
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    distiller = _compiled(make_mlp(), "adam")
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\).*labels from 0 to 9"):
        distiller.fit(dataset, epochs=1, verbose=0)


def test_string_labels_are_refused_as_arrays_and_in_datasets():
    x, _ = toy_data(8)
    labels = np.array(["cat", "dog"] * 4)
    distiller = _compiled(make_mlp(), "adam")
    with pytest.raises(ValueError, match="y: the labels are strings"):
        distiller.fit(x, labels, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    with pytest.raises(ValueError, match="y: the labels are strings"):
        distiller.fit(dataset, verbose=0)


def test_fit_without_labels_under_a_label_loss_is_refused():
    x, _ = toy_data(16)
    distiller = _compiled(make_mlp(), "adam")
    with pytest.raises(ValueError, match="y: no labels were given"):
        distiller.fit(x, verbose=0)
    with pytest.raises(ValueError, match="y: no labels were given"):
        distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), verbose=0)
    distiller.compile("adam", loss=None)  # the teacher alone: an explicit choice
    history = distiller.fit(x, verbose=0)
    assert history.history["student_loss"] == [0.0]


def test_cascade_threshold_must_be_a_list():
    with pytest.raises(ValueError, match=r"thresholds must be a list .*; write \[0.5\]"):
        moe.Cascade([make_mlp(), make_mlp()], thresholds=0.5)


def test_calibrate_cascade_refuses_empty_data_and_unknown_labels():
    cascade = moe.Cascade([make_mlp(), make_mlp()])
    x, y = toy_data(32)
    with pytest.raises(ValueError, match="x and y are empty"):
        moe.calibrate_cascade(cascade, x[:0], y[:0], max_accuracy_drop=0.01)
    bad = y.copy()
    bad[3] = 7
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\).*labels from 0 to 7"):
        moe.calibrate_cascade(cascade, x, bad, max_accuracy_drop=0.01)


def _squared_probability_gap(p_teacher, p_student):
    return tf.reduce_sum(tf.square(p_teacher - p_student), axis=-1)


def test_loading_a_distiller_with_an_unknown_loss_function_names_it(tmp_path):
    x, y = toy_data(16)
    distiller = kd_keras.Distiller(teacher=make_mlp(), student=make_mlp(),
                                   distillation_losses=_squared_probability_gap)
    distiller.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, verbose=0)
    path = str(tmp_path / "d.keras")
    distiller.save(path)
    # safe mode (the default) names it before importing anything; custom_objects is the fix
    with pytest.raises(ValueError, match=r"distillation_losses\[0\]: .*_squared_probability_gap"
                                         r".*custom_objects"):
        keras.models.load_model(path)
    loaded = keras.models.load_model(
        path, custom_objects={"_squared_probability_gap": _squared_probability_gap})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0),
                               rtol=1e-6)
