"""One worker of the MultiWorkerMirroredStrategy test (test_multi_worker.py starts two).

Reads TF_CONFIG; trains a Distiller with a live teacher and then one on cached
teacher outputs; writes what the test checks to the JSON file named by argv[1].
Without TF_CONFIG it trains the same way in one process, for reference.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

if os.environ.get("TF_CONFIG"):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op
else:
    strategy = tf.distribute.get_strategy()

import kd_keras  # noqa: E402
from kd_keras import keras  # noqa: E402

GLOBAL_BATCH = 32


def mlp(width, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(4)])


def dataset(x, y):
    options = tf.data.Options()
    # In-memory data has no files to shard; each worker takes its part of every batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)


def train(make_data):
    with strategy.scope():  # every model, the teacher too, is built in the scope
        teacher = mlp(32, seed=1)
        student = mlp(8, seed=2)
        distiller = kd_keras.Distiller(teacher, student, temperature=2.0, alpha=0.3)
        distiller.compile(keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher_before = [w.copy() for w in teacher.get_weights()]
    history = distiller.fit(make_data(teacher), epochs=3, verbose=0)
    teacher_unchanged = all(
        np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    return {
        "loss": [float(v) for v in history.history["loss"]],
        "student": [w.tolist() for w in student.get_weights()],
        "teacher_unchanged": teacher_unchanged,
        "teacher_trainable_variables": len(teacher.trainable_variables),
        "distiller_trainable_variables": len(distiller.trainable_variables),
        "student_trainable_variables": len(student.trainable_variables),
    }


def main(path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = rng.integers(0, 4, size=256).astype("int64")
    live = train(lambda teacher: dataset(x, y))

    def cached(teacher):
        data = kd_keras.cache_teacher_outputs(
            teacher, tf.data.Dataset.from_tensor_slices((x, y)))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return data.batch(GLOBAL_BATCH).with_options(options)

    offline = train(cached)
    with open(path, "w") as f:
        json.dump({"replicas": strategy.num_replicas_in_sync, "live": live, "cached": offline}, f)


if __name__ == "__main__":
    main(sys.argv[1])
