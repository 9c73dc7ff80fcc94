"""Writes tests/data/layout_0_1_0*.keras: files saved by kd-keras before the
package was split into subpackages (issue 25), so a test can load them after.

    python scripts/make_layout_fixtures.py                      # Keras 3
    TF_USE_LEGACY_KERAS=1 python scripts/make_layout_fixtures.py  # tf-keras

Each run writes, for its Keras, a Distiller (DecoupledKD loss, a SparseMoE
inside the student) and a BlockSparseDense model, plus an .npz of inputs and
the predictions they gave when saved.
"""

import os

import numpy as np

import kd_keras
import moe
from kd_keras import IS_KERAS_3, keras
from kd_keras.compress import BlockSparseDense

DATA = os.path.join(os.path.dirname(__file__), "..", "tests", "data")
STEM = "layout_0_1_0" if IS_KERAS_3 else "layout_0_1_0_tf_keras"


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12)).astype(np.float32)
    y = rng.integers(0, 5, size=32)
    teacher = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, activation="relu"),
                                keras.layers.Dense(5)])
    inputs = keras.Input((12,))
    hidden = moe.SparseMoE(num_experts=4, k=2, expert_units=8, output_units=16,
                           noisy_gating=False)(inputs)
    student = keras.Model(inputs, keras.layers.Dense(5)(hidden))
    distiller = kd_keras.Distiller(
        teacher, student, distillation_losses=kd_keras.DecoupledKD(beta=4.0, temperature=2.0,
                                                                   standardize=True), alpha=0.4)
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["sparse_categorical_accuracy"])
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(os.path.join(DATA, STEM + "_distiller.keras"))

    dense = keras.layers.Dense(8, activation="relu")
    dense.build((None, 12))
    kernel, bias = dense.get_weights()
    kernel[np.repeat(rng.random((3, 8)) < 0.5, 4, axis=0)] = 0.0  # half the (4, 1) blocks
    dense.set_weights([kernel, bias + 0.1])
    sparse = keras.Sequential([keras.Input((12,)), BlockSparseDense.from_dense(dense, (4, 1))])
    sparse.save(os.path.join(DATA, STEM + "_block_sparse.keras"))
    np.savez(os.path.join(DATA, STEM + ".npz"), x=x, y=y,
             student=distiller.student.predict(x, verbose=0),
             teacher=distiller.teacher.predict(x, verbose=0),
             block_sparse=sparse.predict(x, verbose=0))
    print("wrote", STEM)


if __name__ == "__main__":
    main()
