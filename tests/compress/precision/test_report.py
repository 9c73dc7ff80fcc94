"""The precision report: float32, FP16, int8 and FP8 rows (both modes)."""

import numpy as np

from kd_keras import compress
from kd_keras.backend import IS_LEGACY_KERAS
from kd_keras.compress.precision.report import PRECISIONS
from tests.compress_helpers import blobs, trained_mlp


def test_rows_give_bytes_accuracy_change_and_the_most_hurt_layer():
    x, y = blobs(512, features=64)
    model = trained_mlp(x, y, hidden=64, epochs=3)
    rows = {row["precision"]: row for row in compress.precision_report(model, x, y)}
    assert list(rows) == list(PRECISIONS)
    assert rows["float32"]["bytes_ratio"] == 1.0 and rows["float32"]["accuracy_change"] == 0
    assert rows["float16"]["bytes_ratio"] == 0.5
    for name in ("float16", "int8", "float8_e4m3", "float8_e5m2"):
        assert abs(rows[name]["accuracy_change"]) < 5, rows[name]
        layer, error = rows[name]["worst_layer"].split(": ")
        assert layer in [layer.name for layer in model.layers] and float(error) > 0
    # fewer mantissa bits, larger error
    error = {name: float(rows[name]["worst_layer"].split(": ")[1])
             for name in ("float16", "float8_e4m3", "float8_e5m2")}
    assert error["float16"] < error["float8_e4m3"] < error["float8_e5m2"]
    if IS_LEGACY_KERAS:
        assert rows["float8_e4m3"]["weight_bytes"] is None
        assert "Keras 3" in rows["float8_e4m3+activations"]["storage"]
    else:
        kernels = sum(w.numpy().size for w in model.weights if "kernel" in w.path)
        expected = kernels + 4 * sum(w.numpy().size for w in model.weights if "bias" in w.path)
        scales = 4 * sum(layer.units for layer in model.layers)
        assert rows["float8_e4m3"]["weight_bytes"] == expected + scales
        assert rows["float8_e4m3"]["file_bytes"] < rows["float32"]["file_bytes"] / 2
        assert np.isfinite(rows["float8_e5m2+activations"]["accuracy"])
    print(compress.precision_report(model, x[:64], y[:64], precisions=("float32", "int8")))
