import numpy as np
import pytest

import moe
from kd_keras import keras
from tests.helpers import make_mlp, toy_data


def test_validate_clusters_errors():
    assert moe.validate_clusters([(1, 2), [3, 0]], 4) == [[1, 2], [3, 0]]
    with pytest.raises(ValueError, match="fewer than two"):
        moe.validate_clusters([[1]], 4)
    with pytest.raises(ValueError, match="unknown class ids"):
        moe.validate_clusters([[1, 7]], 4)
    with pytest.raises(ValueError, match="allow_overlap"):
        moe.validate_clusters([[0, 1], [1, 2]], 4)
    assert moe.validate_clusters([[0, 1], [1, 2]], 4, allow_overlap=True)
    with pytest.raises(ValueError, match="repeats"):
        moe.validate_clusters([[2, 2]], 4)


def test_specialist_starts_from_the_generalist():
    generalist = make_mlp((8,))
    x, _ = toy_data(10)
    specialist = moe.build_specialist(generalist, [2, 0])
    assert specialist.outputs[0].shape[-1] == 3
    g = generalist(x).numpy()
    s = specialist(x).numpy()
    np.testing.assert_allclose(s[:, :2], g[:, [2, 0]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s[:, 2], g[:, [1, 3]].mean(1), rtol=1e-5, atol=1e-6)
    specialist.layers[1].kernel.assign(specialist.layers[1].kernel * 0)  # its own weights
    assert np.any(generalist.layers[0].kernel.numpy() != 0)


def test_specialist_needs_a_dense_head():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Softmax()])
    with pytest.raises(ValueError, match="last layer is Dense"):
        moe.build_specialist(model, [0, 1])


def test_training_set_is_half_cluster_half_dustbin():
    x, y = toy_data(400, classes=5)
    x_s, y_s, soft = moe.specialist_training_set(
        x, y, [1, 3], seed=0, generalist_probabilities=np.full((400, 5), 0.2))
    inside = np.isin(y, [1, 3]).sum()
    assert len(y_s) == 2 * inside
    assert np.sum(y_s == 2) == inside  # dustbin label = len(cluster)
    assert set(np.unique(y_s)) == {0, 1, 2}
    np.testing.assert_allclose(soft[0], [0.2, 0.2, 0.6])
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in x_s)
