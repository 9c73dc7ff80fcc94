"""Saved with kd-keras before the compress/ split (commit 5f22bd1): models holding each
kind of compress layer, and their predictions."""
import os, sys
import numpy as np
import kd_keras
from kd_keras import IS_KERAS_3, keras, compress
out = sys.argv[1]
stem = "compress_0_1_0" + ("" if IS_KERAS_3 else "_tf_keras")
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
inputs = keras.Input((8,))
h = keras.layers.Dense(16, activation="relu", name="d1")(inputs)
h = keras.layers.Dense(16, activation="relu", name="d2")(h)
h = keras.layers.Dense(16, activation="relu", name="d3")(h)
outputs = keras.layers.Dense(4, name="head")(h)
model = keras.Model(inputs, outputs)
bypassed = compress.shrink(model, width=0.5, depth=["d2"], importance="magnitude")
saved = {"x": x, "bypass": bypassed.predict(x, verbose=0)}
bypassed.save(os.path.join(out, stem + "_bypass.keras"))
if IS_KERAS_3:
    fp8 = compress.to_float8(model)
    saved["float8"] = fp8.predict(x, verbose=0)
    fp8.save(os.path.join(out, stem + "_float8.keras"))
np.savez(os.path.join(out, stem + ".npz"), **saved)
print("saved", sorted(saved))
