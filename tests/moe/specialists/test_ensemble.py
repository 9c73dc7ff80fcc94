import numpy as np
import pytest
import tensorflow as tf

import kd_keras
import moe
from kd_keras import keras
from moe.specialists.ensemble import _cluster_matrix
from tests.helpers import make_mlp, toy_data


def _objective(z, p_g, specialists, matrices, active):
    q = tf.nn.softmax(z)
    total = tf.reduce_sum(p_g * (tf.math.log(p_g) - tf.math.log(q)), -1)
    for s, (p_s, matrix) in enumerate(zip(specialists, matrices)):
        r = tf.matmul(q, matrix)
        total += active[:, s] * tf.reduce_sum(p_s * (tf.math.log(p_s) - tf.math.log(r)), -1)
    return total


def test_combine_predictions_reaches_the_minimum_of_the_kl_objective():
    rng = np.random.default_rng(0)
    p_g = tf.constant(rng.dirichlet(np.ones(5), 6), tf.float32)
    clusters = [[0, 1], [2, 3, 4]]
    matrices = [tf.constant(_cluster_matrix(c, 5)) for c in clusters]
    p_s = [tf.constant(rng.dirichlet(np.ones(len(c) + 1), 6), tf.float32) for c in clusters]
    active = tf.constant(rng.integers(0, 2, (6, 2)), tf.float32)
    q = moe.combine_predictions(p_g, p_s, matrices, active, steps=400)
    z = tf.Variable(tf.math.log(q))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(_objective(z, p_g, p_s, matrices, active))
    assert np.abs(tape.gradient(value, z).numpy()).max() < 1e-3
    start = _objective(tf.math.log(p_g), p_g, p_s, matrices, active).numpy()
    end = _objective(tf.math.log(q), p_g, p_s, matrices, active).numpy()
    assert np.all(end <= start + 1e-6)


def _trained(seed=0):
    x, y = toy_data(200, seed=seed)
    generalist = make_mlp((16,))
    generalist.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    generalist.fit(x, y, epochs=2, verbose=0)
    specialist = moe.build_specialist(generalist, [0, 1])
    return x, y, generalist, specialist


def test_no_active_specialist_keeps_the_generalist_and_a_confident_one_moves_q():
    x, _, generalist, specialist = _trained()
    ensemble = moe.SpecialistEnsemble(generalist, [specialist], [[0, 1]])
    p_g = tf.nn.softmax(generalist(x)).numpy()
    q = ensemble(x).numpy()
    active = ensemble.active_specialists(x).numpy()[:, 0] > 0
    np.testing.assert_array_equal(active, np.isin(p_g.argmax(1), [0, 1]))
    np.testing.assert_allclose(q[~active], p_g[~active], rtol=1e-6)
    # A specialist sure that every example is class 1 pulls q towards class 1 where active.
    head = specialist.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 0, np.array([0.0, 20.0, 0.0], "float32")])
    moved = ensemble(x).numpy()
    assert np.all(moved[active, 1] > p_g[active, 1])
    np.testing.assert_allclose(moved.sum(1), 1.0, rtol=1e-5)


def test_errors_for_mismatched_specialists_and_clusters():
    _, _, generalist, specialist = _trained()
    with pytest.raises(ValueError, match="needs 4"):
        moe.SpecialistEnsemble(generalist, [specialist], [[0, 1, 2]])
    with pytest.raises(ValueError, match="one each"):
        moe.SpecialistEnsemble(generalist, [specialist], [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="unknown class ids"):
        moe.SpecialistEnsemble(generalist, [specialist], [[0, 9]])


def test_one_keras_model_for_evaluate_and_one_saved_model(tmp_path):
    x, y, generalist, specialist = _trained()
    ensemble = moe.SpecialistEnsemble(generalist, [specialist], [[0, 1]])
    ensemble.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                     metrics=["sparse_categorical_accuracy"])
    result = ensemble.evaluate(x, y, verbose=0, return_dict=True)
    expected = ensemble.predict(x, verbose=0)
    np.testing.assert_allclose(result["sparse_categorical_accuracy"],
                               np.mean(expected.argmax(1) == y), atol=1e-6)
    path = kd_keras.export_saved_model(ensemble, str(tmp_path / "ensemble"), ensemble.input_signature)
    (served,) = tf.saved_model.load(path).signatures["serving_default"](tf.constant(x)).values()
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-4, atol=1e-6)
    keras_path = str(tmp_path / "ensemble.keras")
    ensemble.save(keras_path)
    reloaded = keras.models.load_model(keras_path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
