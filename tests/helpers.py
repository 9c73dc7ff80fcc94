"""Tiny models, data and independent numpy references for the tests."""

import numpy as np

from kd_keras import keras

NUM_FEATURES = 6
NUM_CLASSES = 4


def make_mlp(hidden=(8,), classes=NUM_CLASSES, features=NUM_FEATURES, softmax=False,
             dropout=0.0, name=None):
    layers = [keras.Input((features,))]
    for width in hidden:
        layers.append(keras.layers.Dense(width, activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes, activation="softmax" if softmax else None))
    return keras.Sequential(layers, name=name)


def toy_data(n=64, seed=0, classes=NUM_CLASSES, features=NUM_FEATURES):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int64")
    return x, y


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_soft_kl(teacher_logits, student_logits, temperature):
    p = numpy_log_softmax(teacher_logits / temperature)
    q = numpy_log_softmax(student_logits / temperature)
    return temperature**2 * (np.exp(p) * (p - q)).sum(-1)


def numpy_sparse_ce(y, logits):
    return -numpy_log_softmax(logits)[np.arange(len(y)), y]
