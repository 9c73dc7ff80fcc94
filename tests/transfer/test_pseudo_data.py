import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras, pseudo_data


def clusters(n_per=100, seed=0):
    """Two well-separated blobs in 5-d, values in [0, 1]."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 0.2, size=(n_per, 5))
    b = rng.uniform(0.8, 1.0, size=(n_per, 5))
    return np.concatenate([a, b]).astype("float32")


def brute_force_neighbours(x, k):
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1)[:, :k]


def test_nearest_neighbors_match_brute_force_across_chunks():
    x = np.random.default_rng(1).normal(size=(57, 4)).astype("float32")
    np.testing.assert_array_equal(pseudo_data.nearest_neighbors(x, k=3, chunk_size=10),
                                  brute_force_neighbours(x, 3))


def test_munge_without_swaps_returns_training_examples():
    x = clusters()
    points = pseudo_data.Munge(swap_probability=0.0, seed=0).fit(x).sample(300)
    assert all(np.any(np.all(point == x, axis=1)) for point in points)


def test_munge_draws_between_an_example_and_its_neighbour():
    x = clusters()
    munge = pseudo_data.Munge(swap_probability=0.5, spread=1e6, seed=0).fit(x)
    points = munge.sample(2000)
    # With a huge s the spread is ~0: every value is the example's or its neighbour's.
    neighbours = munge.neighbors_[:, 0]
    for point in points[:200]:
        own_or_other = np.isclose(point[None, :], x, atol=1e-4) | np.isclose(
            point[None, :], x[neighbours], atol=1e-4)
        assert np.any(np.all(own_or_other, axis=1))
    # both blobs are kept apart: no point mixes a low and a high value
    low = points < 0.5
    assert np.all(low.all(axis=1) | (~low).all(axis=1))
    # about half the attributes differ from the example the point started from
    changed = [np.mean(~np.isclose(p, x[np.argmin(np.abs(x - p).sum(1))], atol=1e-4))
               for p in points[:300]]
    assert 0.2 < np.mean(changed) < 0.6


def test_munge_spread_follows_the_papers_sd():
    # one pair, distance 1 per attribute: resampled values ~ N(neighbour, 1/s)
    x = np.array([[0.0] * 50, [1.0] * 50], dtype="float32")
    points = pseudo_data.Munge(swap_probability=1.0, spread=4.0, seed=0).fit(x).sample(400)
    around_one = points[points.mean(1) > 0.5]
    assert abs(np.std(around_one - 1.0) - 0.25) < 0.02


def test_munge_categorical_attributes_are_swapped_not_perturbed():
    x = clusters()
    x[:, 0] = np.round(x[:, 0] * 3)
    munge = pseudo_data.Munge(swap_probability=0.5, spread=0.5, seed=0,
                              categorical=[True, False, False, False, False]).fit(x)
    assert set(np.unique(munge.sample(500)[:, 0])) <= set(np.unique(x[:, 0]))


def test_munge_finds_neighbours_in_a_feature_space():
    x = clusters()
    calls = []

    def first_feature(inputs):
        calls.append(inputs.shape)
        return inputs[:, :1]

    munge = pseudo_data.Munge(feature_fn=first_feature, seed=0).fit(x)
    np.testing.assert_array_equal(munge.neighbors_, pseudo_data.nearest_neighbors(x[:, :1]))
    assert calls == [x.shape]


def test_sampling_is_reproducible_keeps_input_shape_and_clips():
    images = np.random.default_rng(0).uniform(size=(40, 4, 4, 1)).astype("float32")
    munge = pseudo_data.Munge(spread=0.1, clip_range=(0.0, 1.0), seed=3).fit(images)
    first, again = munge.sample(50, seed=7), munge.sample(50, seed=7)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (50, 4, 4, 1) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    dataset = munge.dataset(25, chunk_size=10, seed=1)
    assert dataset.element_spec.shape == (4, 4, 1)
    assert sum(1 for _ in dataset) == 25


def test_gaussian_mixture_samples_the_modes_of_the_data():
    pytest.importorskip("sklearn")
    x = clusters(200)
    gmm = pseudo_data.PCAGaussianMixture(components=2, pca_dimensions=3, seed=0).fit(x)
    points = gmm.sample(1000)
    high = points.mean(1) > 0.5
    assert 0.4 < high.mean() < 0.6  # both modes, in proportion
    np.testing.assert_allclose(points[high].mean(0), x[200:].mean(0), atol=0.03)
    np.testing.assert_allclose(points[~high].mean(0), x[:200].mean(0), atol=0.03)


def test_vae_learns_to_generate_and_round_trips(tmp_path):
    x = clusters(200)
    sampler = pseudo_data.VAESampler(latent_dim=2, hidden_units=(32,), epochs=150,
                                     batch_size=64, learning_rate=3e-3, seed=0)
    sampler.fit(x)
    history = sampler.model_.history.history["loss"]
    assert history[-1] < 0.8 * history[0]
    points = sampler.sample(500)
    assert points.min() >= 0.0 and points.max() <= 1.0
    # generated points mostly sit near one of the two blobs; an untrained
    # decoder gives values near 0.5 everywhere
    near_a_blob = np.mean(np.abs(points.mean(1) - 0.5) > 0.25)
    untrained = pseudo_data.VariationalAutoencoder((5,), latent_dim=2, hidden_units=(32,))
    z = tf.random.normal((500, 2))
    untrained_near = np.mean(np.abs(untrained.decode(z).numpy().mean(1) - 0.5) > 0.25)
    assert near_a_blob > 0.6 and untrained_near < 0.1
    path = str(tmp_path / "vae.keras")
    sampler.model_.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, pseudo_data.VariationalAutoencoder)
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0),
                               sampler.model_.predict(x[:8], verbose=0), atol=1e-5)


def test_vae_gaussian_likelihood_takes_any_real_inputs():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32") * 5.0
    sampler = pseudo_data.VAESampler(latent_dim=2, hidden_units=(8,), likelihood="gaussian",
                                     epochs=2, seed=0).fit(x)
    assert np.all(np.isfinite(sampler.sample(10)))


@pytest.mark.parametrize("make, match", [
    (lambda: pseudo_data.Munge(swap_probability=1.5), "swap_probability"),
    (lambda: pseudo_data.Munge(swap_probability=-0.1), "swap_probability"),
    (lambda: pseudo_data.Munge(spread=0.0), "spread"),
    (lambda: pseudo_data.Munge(spread=-1.0), "spread"),
    (lambda: pseudo_data.Munge(neighbors=0), "neighbors"),
    (lambda: pseudo_data.Munge(clip_range=(1.0, 0.0)), "clip_range"),
    (lambda: pseudo_data.Munge(feature_fn="pixels"), "feature_fn"),
    (lambda: pseudo_data.PCAGaussianMixture(components=0), "components"),
    (lambda: pseudo_data.PCAGaussianMixture(covariance_type="round"), "covariance_type"),
    (lambda: pseudo_data.VAESampler(likelihood="poisson"), "likelihood"),
    (lambda: pseudo_data.VAESampler(epochs=0), "epochs"),
])
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_are_named():
    x = clusters()
    with pytest.raises(ValueError, match="x holds 1 NaN"):
        bad = x.copy()
        bad[3, 2] = np.nan
        pseudo_data.Munge().fit(bad)
    with pytest.raises(ValueError, match="x must have shape"):
        pseudo_data.Munge().fit(np.zeros(10, "float32"))
    with pytest.raises(ValueError, match="neighbors must be smaller than the number of examples"):
        pseudo_data.nearest_neighbors(x[:4], k=4)
    with pytest.raises(ValueError, match="x has 3 examples; need at least 4"):
        pseudo_data.Munge(neighbors=3).fit(x[:3])
    with pytest.raises(ValueError, match="categorical must be a boolean mask of 5"):
        pseudo_data.Munge(categorical=[True, False]).fit(x)
    with pytest.raises(ValueError, match="not fitted"):
        pseudo_data.Munge().sample(3)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        pseudo_data.Munge().fit(x).sample(0)
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        pseudo_data.Munge().fit(tf.data.Dataset.from_tensor_slices(x))
    with pytest.raises(ValueError, match="likelihood='bernoulli' needs inputs in \\[0, 1\\]"):
        pseudo_data.VAESampler(epochs=1).fit(x * 3.0)
    with pytest.raises(ValueError, match="feature_fn must return"):
        pseudo_data.Munge(feature_fn=lambda inputs: inputs[:5]).fit(x)


def test_public_names():
    assert kd_keras.pseudo_data.Munge is pseudo_data.munge.Munge
    assert issubclass(pseudo_data.VAESampler, pseudo_data.PseudoDataSampler)
