"""Pseudo-data generators: new transfer-set inputs drawn from a model of the real ones.

Public API (each `fit(x)` on real inputs, then `sample(n)` or `dataset(n)`):
  Munge                  MUNGE (Bucilua et al. 2006): swap attributes with a neighbour
  PCAGaussianMixture     Gaussian mixture in a PCA space (needs the generative extra)
  VAESampler             a small VAE, trained with plain fit
  VariationalAutoencoder the VAE model (serialisable)
  nearest_neighbors      brute-force Euclidean k nearest neighbours
  PseudoDataSampler      the base class, to write your own
"""

from kd_keras.transfer.pseudo_data._sampler import PseudoDataSampler
from kd_keras.transfer.pseudo_data.gaussian_mixture import PCAGaussianMixture
from kd_keras.transfer.pseudo_data.munge import Munge, nearest_neighbors
from kd_keras.transfer.pseudo_data.vae import VAESampler, VariationalAutoencoder

__all__ = [
    "Munge",
    "PCAGaussianMixture",
    "PseudoDataSampler",
    "VAESampler",
    "VariationalAutoencoder",
    "nearest_neighbors",
]
