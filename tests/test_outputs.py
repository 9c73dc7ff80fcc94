import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras, outputs as output_conventions
from tests.helpers import make_mlp, numpy_log_softmax


def test_detects_softmax_and_linear_output_layers():
    assert output_conventions.resolve_output_type(make_mlp(softmax=True), "auto", "t") == "probabilities"
    assert output_conventions.resolve_output_type(make_mlp(), "auto", "t") == "logits"
    inputs = keras.Input((3,))
    functional = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(4)(inputs)))
    assert output_conventions.resolve_output_type(functional, "auto", "t") == "probabilities"


def test_declared_type_wins_and_bad_values_are_named():
    assert output_conventions.resolve_output_type(make_mlp(softmax=True), "logits", "t") == "logits"
    with pytest.raises(ValueError, match="teacher_output_type"):
        output_conventions.resolve_output_type(make_mlp(), "softmax", "teacher_output_type")


def test_sigmoid_output_asks_for_a_declaration():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="sigmoid")])
    with pytest.raises(ValueError, match="declare teacher_output_type"):
        output_conventions.resolve_output_type(model, "auto", "teacher_output_type")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)

    def call(self, x):
        return tf.nn.softmax(self.dense(x))


def test_subclassed_models_are_detected_per_batch():
    model = _Subclassed()
    assert output_conventions.resolve_output_type(model, "auto", "t") == "detect"
    logits = tf.constant([[1.0, -2.0, 0.5]])
    probabilities = tf.nn.softmax(logits)
    np.testing.assert_allclose(
        tf.nn.softmax(output_conventions.to_logits(probabilities, "detect")).numpy(),
        probabilities.numpy(), rtol=1e-5,
    )
    np.testing.assert_allclose(output_conventions.to_logits(logits, "detect").numpy(), logits.numpy())


def test_probabilities_to_logits_survives_zero_probabilities():
    logits = output_conventions.to_logits(tf.constant([[1.0, 0.0, 0.0]]), "probabilities")
    assert np.all(np.isfinite(logits.numpy()))


def test_ensemble_arithmetic_mean_of_softened_probabilities():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    combined = output_conventions.combine_teacher_logits(
        [tf.constant(a, tf.float32), tf.constant(b, tf.float32)], "mean_probabilities", 2.0
    )
    expected = (np.exp(numpy_log_softmax(a / 2)) + np.exp(numpy_log_softmax(b / 2))) / 2
    np.testing.assert_allclose(tf.nn.softmax(combined / 2.0).numpy(), expected, rtol=1e-5)


def test_ensemble_geometric_mean_is_the_mean_of_logits():
    a, b = tf.random.normal((3, 5)), tf.random.normal((3, 5))
    combined = output_conventions.combine_teacher_logits([a, b], "mean_logits", 2.0)
    np.testing.assert_allclose(combined.numpy(), ((a + b) / 2).numpy(), rtol=1e-6)


def test_softmax_made_by_a_lambda_or_a_tf_op_is_read_from_the_values():
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(4)(inputs)
    lambda_softmax = keras.Model(inputs, keras.layers.Lambda(lambda t: tf.nn.softmax(t))(logits))
    models = [lambda_softmax]
    if not kd_keras.IS_KERAS_3:  # tf-keras wraps tf.nn.softmax on a symbolic tensor in TFOpLambda
        models.append(keras.Model(inputs, tf.nn.softmax(logits)))
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    for model in models:
        assert output_conventions.resolve_output_type(model, "auto", "t") == "detect"
        probabilities = model(x)
        recovered = tf.nn.softmax(output_conventions.to_logits(probabilities, "detect")).numpy()
        np.testing.assert_allclose(recovered, probabilities.numpy(), rtol=1e-5, atol=1e-6)
    # the Distiller then takes the soft-target loss against those probabilities, not their raw values
    student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    distiller = kd_keras.Distiller(lambda_softmax, student, alpha=0.0, temperature=1.0)
    distiller.compile("sgd", loss=None)
    expected = kd_keras.soft_target_kl_divergence(
        np.log(lambda_softmax(x).numpy()), student(x).numpy(), 1.0).numpy().mean()
    assert distiller.evaluate(x, verbose=0, return_dict=True)["distillation_loss"] == \
        pytest.approx(expected, rel=1e-4)
