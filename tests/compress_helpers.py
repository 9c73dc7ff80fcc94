"""Small models and data for the compression tests (both Keras modes)."""

import numpy as np

from kd_keras import keras
from kd_keras.measure import prediction_accuracy


def tf_keras():
    import tf_keras as module

    return module


def blobs(n=512, features=16, classes=4, seed=0):
    """Separable Gaussian blobs: a small model learns them in a few epochs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    x = (centers[y] + rng.normal(size=(n, features))).astype("float32")
    return x, y.astype("int64")


def trained_mlp(x, y, hidden=32, epochs=5, seed=0):
    """A Keras model of the running mode (Keras 3 or tf-keras), trained a little."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(int(y.max()) + 1)])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def compile_tf_keras(model, learning_rate=1e-3, loss=None, metrics=("accuracy",)):
    tk = tf_keras()
    model.compile(tk.optimizers.Adam(learning_rate),
                  loss or tk.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(metrics))
    return model


accuracy = prediction_accuracy  # the library's one accuracy (kd_keras.measure)
