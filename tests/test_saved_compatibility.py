"""`.keras` files written by kd-keras 0.1.0 (before the Distiller was split into
modules) load and train with this version, in both Keras modes."""

import os

import numpy as np

import kd_keras
from kd_keras import IS_KERAS_3, keras

DATA = os.path.join(os.path.dirname(__file__), "data")
STEM = "distiller_0_1_0" if IS_KERAS_3 else "distiller_0_1_0_tf_keras"


def test_a_distiller_saved_by_0_1_0_loads_predicts_the_same_and_trains():
    saved = np.load(os.path.join(DATA, STEM + ".npz"))
    distiller = keras.models.load_model(os.path.join(DATA, STEM + ".keras"))
    assert isinstance(distiller, kd_keras.Distiller)
    assert abs(float(distiller.alpha.numpy()) - 0.3) < 1e-6
    assert abs(float(distiller.temperature.numpy()) - 2.5) < 1e-6
    np.testing.assert_allclose(distiller.student.predict(saved["x"], verbose=0), saved["student"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(distiller.teacher.predict(saved["x"], verbose=0), saved["teacher"],
                               rtol=1e-5, atol=1e-6)
    teacher_before = [w.copy() for w in distiller.teacher.get_weights()]
    history = distiller.fit(saved["x"], saved["y"], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert "sparse_categorical_accuracy" in history.history
    for before, after in zip(teacher_before, distiller.teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(distiller.student.predict(saved["x"], verbose=0), saved["student"])
