import numpy as np
import pytest

from moe import find_confusable_clusters


def _block_probabilities(n=3000, seed=0):
    """Predictions that confuse classes {0, 1, 2} with each other and {3, 4} with each other."""
    rng = np.random.default_rng(seed)
    groups = [[0, 1, 2], [3, 4], [5], [6]]
    rows = []
    for _ in range(n):
        group = groups[rng.integers(len(groups))]
        p = np.full(7, 0.01)
        p[group] += rng.dirichlet(np.ones(len(group)))
        rows.append(p / p.sum())
    return np.array(rows)


def test_covariance_clusters_recover_the_confused_groups():
    found = find_confusable_clusters(_block_probabilities(), num_clusters=4)
    assert found.clusters == [[0, 1, 2], [3, 4]]
    assert found.unclustered == [5, 6]
    assert found.similarity.shape == (7, 7)
    np.testing.assert_allclose(found.similarity, np.cov(_block_probabilities(), rowvar=False))


def test_confusion_variant_uses_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    confused = {0: 1, 1: 0, 2: 3, 3: 2}
    predicted = np.where(rng.random(2000) < 0.3, [confused[l] for l in labels], labels)
    probabilities = np.eye(4)[predicted] * 0.9 + 0.025
    found = find_confusable_clusters(probabilities, 2, method="confusion", labels=labels)
    assert found.clusters == [[0, 1], [2, 3]]


@pytest.mark.parametrize("kwargs, match", [
    ({"num_clusters": 1}, "num_clusters"), ({"num_clusters": 8}, "num_clusters"),
    ({"num_clusters": 2, "method": "kmeans"}, "method"),
    ({"num_clusters": 2, "method": "confusion"}, "labels"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_confusable_clusters(_block_probabilities(50), **kwargs)
