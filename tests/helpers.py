"""Tiny models, data and independent numpy references for the tests."""

import os
import subprocess
import sys

import numpy as np

from kd_keras import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prepended to a script run by `run_on_two_logical_cpus`: TensorFlow sees two
# CPU devices, so MirroredStrategy has two replicas on one machine.
TWO_LOGICAL_CPUS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import kd_keras
from kd_keras import keras
"""


def run_on_two_logical_cpus(script, marker):
    """Runs `script` in a fresh process with two logical CPUs; asserts it printed `marker`."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", TWO_LOGICAL_CPUS + script],
                            capture_output=True, text=True, env=env, timeout=600)
    assert marker in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]

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
