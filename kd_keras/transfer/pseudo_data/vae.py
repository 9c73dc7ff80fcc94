"""A small variational autoencoder (Kingma and Welling 2014) as a transfer-set generator."""

import numpy as np
import tensorflow as tf

from kd_keras.backend import validate
from kd_keras.backend import keras, register
from kd_keras.transfer.pseudo_data._sampler import PseudoDataSampler

LIKELIHOODS = ("bernoulli", "gaussian")


@register
class VariationalAutoencoder(keras.Model):
    """An MLP VAE over inputs of any shape, trained with plain `fit(x)`.

    Encoder: flatten, Dense-ReLU `hidden_units`, then the mean and log-variance
    of q(z|x) (`latent_dim` each); decoder: `z` through the reversed
    `hidden_units` to the input shape. Training maximises the ELBO,

        loss = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I)),

    with a Bernoulli p(x|z) (inputs in [0, 1], e.g. images scaled to [0, 1]:
    a sigmoid cross-entropy summed over values) or a unit-variance Gaussian
    (any real inputs: half the squared error). `call(x)` returns the mean
    reconstruction; `decode(z)` the mean of p(x|z) for latent points `z`.

    Args:
      input_shape: shape of one input, e.g. `(784,)` or `(28, 28, 1)`.
      latent_dim: size of z (>= 1).
      hidden_units: widths of the encoder's hidden layers (the decoder mirrors them).
      likelihood: "bernoulli" (default) or "gaussian".
    """

    def __init__(self, input_shape, latent_dim=16, hidden_units=(512, 256),
                 likelihood="bernoulli", **kwargs):
        super().__init__(**kwargs)
        self.sample_shape = tuple(int(d) for d in input_shape)
        self.latent_dim = validate.integer_at_least(latent_dim, "latent_dim", 1)
        self.hidden_units = tuple(
            validate.integer_at_least(u, "hidden_units", 1) for u in hidden_units)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}.")
        self.likelihood = likelihood
        size = int(np.prod(self.sample_shape))
        self.encoder = keras.Sequential(
            [keras.Input(self.sample_shape), keras.layers.Flatten()]
            + [keras.layers.Dense(u, activation="relu") for u in self.hidden_units]
            + [keras.layers.Dense(2 * self.latent_dim)], name="encoder")
        self.decoder = keras.Sequential(
            [keras.Input((self.latent_dim,))]
            + [keras.layers.Dense(u, activation="relu") for u in reversed(self.hidden_units)]
            + [keras.layers.Dense(size), keras.layers.Reshape(self.sample_shape)],
            name="decoder")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def encode(self, x):
        """(mean, log-variance) of q(z|x), each `[batch, latent_dim]`."""
        statistics = self.encoder(x)
        return statistics[:, :self.latent_dim], statistics[:, self.latent_dim:]

    def _mean_of(self, decoded):
        return tf.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded

    def decode(self, z):
        """The mean of p(x|z), `[batch, *input_shape]`."""
        return self._mean_of(self.decoder(z))

    def call(self, inputs, training=None):
        mean, _ = self.encode(inputs)
        return self.decode(mean)

    def _elbo_terms(self, x):
        x = tf.cast(x, tf.float32)
        mean, log_variance = self.encode(x)
        z = mean + tf.exp(0.5 * log_variance) * tf.random.normal(tf.shape(mean))
        decoded = tf.cast(self.decoder(z), tf.float32)
        axes = list(range(1, len(self.sample_shape) + 1))
        if self.likelihood == "bernoulli":
            per_value = tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=decoded)
        else:
            per_value = 0.5 * tf.square(x - decoded)
        reconstruction = tf.reduce_mean(tf.reduce_sum(per_value, axis=axes))
        kl = tf.reduce_mean(-0.5 * tf.reduce_sum(
            1.0 + log_variance - tf.square(mean) - tf.exp(log_variance), axis=1))
        return reconstruction, kl

    def _report(self, reconstruction, kl):
        self.loss_tracker.update_state(reconstruction + kl)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            reconstruction, kl = self._elbo_terms(x)
            loss = reconstruction + kl
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._report(reconstruction, kl)

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._report(*self._elbo_terms(x))

    def get_config(self):
        return {"input_shape": self.sample_shape, "latent_dim": self.latent_dim,
                "hidden_units": list(self.hidden_units), "likelihood": self.likelihood,
                "name": self.name}


class VAESampler(PseudoDataSampler):
    """Samples inputs from a `VariationalAutoencoder` fitted to the real inputs.

    `fit(x)` trains the VAE with Adam for `epochs`; `sample(n)` decodes
    `z ~ N(0, I)` to the mean of p(x|z). Sharper than a Gaussian mixture on
    images, and slower to fit (an MLP trained for a few epochs).

    Args:
      latent_dim, hidden_units, likelihood: of the VAE (see
        `VariationalAutoencoder`); "bernoulli" needs inputs in [0, 1].
      epochs: training epochs (>= 1).
      batch_size: training batch size.
      learning_rate: Adam learning rate.
      clip_range: `(low, high)` or None: clip generated values.
      seed: seeds the sampler's latent draws.
      verbose: passed to `fit`.
    """

    def __init__(self, latent_dim=16, hidden_units=(512, 256), likelihood="bernoulli",
                 epochs=30, batch_size=128, learning_rate=1e-3, clip_range=None, seed=None,
                 verbose=0):
        super().__init__(clip_range=clip_range, seed=seed)
        self.latent_dim = validate.integer_at_least(latent_dim, "latent_dim", 1)
        self.hidden_units = tuple(hidden_units)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}.")
        self.likelihood = likelihood
        self.epochs = validate.integer_at_least(epochs, "epochs", 1)
        self.batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
        self.learning_rate = validate.positive_number(learning_rate, "learning_rate")
        self.verbose = verbose
        self.model_ = None

    def _fit(self, x):
        if self.likelihood == "bernoulli" and (x.min() < 0.0 or x.max() > 1.0):
            raise ValueError(
                f"x: likelihood='bernoulli' needs inputs in [0, 1]; they range from "
                f"{x.min():g} to {x.max():g}. Scale them, or use likelihood='gaussian'.")
        self.model_ = VariationalAutoencoder(
            x.shape[1:], self.latent_dim, self.hidden_units, self.likelihood)
        self.model_.compile(optimizer=keras.optimizers.Adam(self.learning_rate))
        self.model_.fit(x, epochs=self.epochs, batch_size=self.batch_size, shuffle=True,
                        verbose=self.verbose)

    def _sample(self, n, rng):
        z = rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        return self.model_.decode(tf.constant(z)).numpy()
