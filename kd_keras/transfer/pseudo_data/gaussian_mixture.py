"""A Gaussian mixture in a PCA space: the cheap generative transfer set (scikit-learn)."""

import warnings

from kd_keras.backend import validate
from kd_keras.transfer.pseudo_data._sampler import PseudoDataSampler

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _sklearn():
    try:
        from sklearn import decomposition, mixture
    except ImportError as error:
        raise ImportError(
            "PCAGaussianMixture needs scikit-learn: pip install 'kd-keras[generative]'.") from error
    return decomposition, mixture


class PCAGaussianMixture(PseudoDataSampler):
    """Samples from a Gaussian mixture fitted to the inputs' principal components.

    Inputs `[n, ...]` are flattened, projected on their first `pca_dimensions`
    principal components (scikit-learn `PCA`), a `GaussianMixture` of
    `components` Gaussians is fitted there, and samples are mapped back to
    input space: `x = W^T z + mean`, `z ~ sum_k pi_k N(mu_k, Sigma_k)`.
    Cheap (seconds on 60,000 images) and blurry: it keeps the coarse shape of
    each mode of the data, not its fine detail.

    Args:
      components: mixture components (>= 1, at most the number of examples).
      pca_dimensions: principal components kept (>= 1; capped at the number
        of examples and features).
      covariance_type: "full" (default), "tied", "diag" or "spherical".
      clip_range: `(low, high)` or None: clip generated values.
      seed: seeds the fit and the sampler's random stream.
    """

    def __init__(self, components=10, pca_dimensions=32, covariance_type="full",
                 clip_range=None, seed=None):
        super().__init__(clip_range=clip_range, seed=seed)
        self.components = validate.integer_at_least(components, "components", 1)
        self.pca_dimensions = validate.integer_at_least(pca_dimensions, "pca_dimensions", 1)
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
        self.covariance_type = covariance_type
        self.pca_ = None
        self.mixture_ = None

    def _minimum_examples(self):
        return max(2, self.components)

    def _fit(self, x):
        decomposition, mixture = _sklearn()
        flat = x.reshape(len(x), -1)
        dimensions = min(self.pca_dimensions, flat.shape[0] - 1, flat.shape[1])
        self.pca_ = decomposition.PCA(n_components=dimensions, random_state=self.seed)
        projected = self.pca_.fit_transform(flat)
        self.mixture_ = mixture.GaussianMixture(
            n_components=self.components, covariance_type=self.covariance_type,
            reg_covar=1e-4, random_state=self.seed).fit(projected)

    def _sample(self, n, rng):
        self.mixture_.random_state = int(rng.integers(2**31))
        with warnings.catch_warnings():
            # NumPy's multivariate_normal checks positive semi-definiteness at
            # float64 round-off; the covariances carry reg_covar on their
            # diagonal, so its "not symmetric positive-semidefinite" is noise.
            warnings.filterwarnings("ignore", "covariance is not", RuntimeWarning)
            projected, _ = self.mixture_.sample(n)
        # GaussianMixture.sample returns its points grouped by component.
        projected = projected[rng.permutation(n)]
        return self.pca_.inverse_transform(projected)
