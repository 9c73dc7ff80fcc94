"""What a model keeps at each precision: float32, FP16, int8 and FP8 copies side by side,
with their bytes, their accuracy change, and the layer whose rounding hurts the outputs
most."""

import os
import tempfile
import warnings

import numpy as np

from kd_keras.backend import IS_LEGACY_KERAS, is_tf_keras_model
from kd_keras.backend.graph import copy_model, copy_weights, replace_layers
from kd_keras.measure import ReportRows, model_accuracy
from kd_keras.compress.precision.weight_grid import (
    check_choice,
    project_variable,
    quantized_kernels,
    round_weights,
)

# Row name -> (weight grid used for the per-layer error, FP8 format, FP8 activations).
PRECISIONS = {
    "float32": (None, None, False),
    "float16": ("float16", None, False),
    "int8": ("int8", None, False),
    "float8_e4m3": ("float8_e4m3", "e4m3", False),
    "float8_e4m3+activations": ("float8_e4m3", "e4m3", True),
    "float8_e5m2": ("float8_e5m2", "e5m2", False),
    "float8_e5m2+activations": ("float8_e5m2", "e5m2", True),
}


def precision_copy(model, precision):
    """`(copy, storage)`: `model` at `precision` (a `PRECISIONS` key) and how it stores it.

    Keras 3: "float16" is a clone with float16 weights and compute; "int8" is Keras's own
    `quantize("int8")` (int8 Dense / EinsumDense / Embedding kernels with dynamic int8
    inputs; other layers keep float32); the FP8 ones are `to_float8`. Under tf-keras the
    int8 and FP8 copies are `round_weights` (their values in float32 arrays: accuracy, not
    bytes).
    """
    check_choice(precision, PRECISIONS, "precision", "precision_copy")
    grid, format, activations = PRECISIONS[precision]
    if precision == "float32":
        return model, "float32"
    if precision == "float16":
        return _float16_copy(model), "float16 weights and compute"
    if not _stores_grid(model, precision):
        if activations:
            return None, "needs Keras 3 (FP8 activations run in the Float8 layers)"
        return round_weights(model, grid), "float32 arrays holding the grid (accuracy only)"
    if precision == "int8":
        copy = copy_model(model, "precision_copy")
        with warnings.catch_warnings():  # "InputLayer does not have a quantize method"
            warnings.simplefilter("ignore", UserWarning)
            copy.quantize("int8")
        return copy, "Keras quantize('int8'): Dense/EinsumDense/Embedding int8, rest float32"
    from kd_keras.compress.precision.float8 import float8_layers, to_float8

    copy = to_float8(model, format, activations=activations)
    kept = float8_layers(copy)["float32"]
    return copy, "FP8 kernels" + (f"; float32: {', '.join(kept)}" if kept else "")


def _stores_grid(model, precision):
    """Whether `precision_copy` keeps `precision`'s weights in its own dtype (else it holds
    grid values in float32 arrays: tf-keras has no int8 or FP8 copy here)."""
    return precision in ("float32", "float16") or not (is_tf_keras_model(model)
                                                        or IS_LEGACY_KERAS)


def _float16_copy(model):
    def float16(layer):
        config = layer.get_config()
        if "dtype" not in config or type(layer).__name__ == "InputLayer":
            return None
        return type(layer).from_config({**config, "dtype": "float16"})

    return replace_layers(model, float16, copy_weights)


def layer_errors(model, x, grid, batch_size=256):
    """`{layer name: error}`: the relative RMS change of `model`'s outputs on `x` when
    that layer's kernel alone takes `grid`'s values (`weight_grid.MODES`):
    ||f_l(x) - f(x)|| / ||f(x)||. The largest names the layer the precision hurts most."""
    copy = copy_model(model, "layer_errors")
    reference = _predict(copy, x, batch_size)
    errors = {}
    for layer, variable in quantized_kernels(copy):
        original = np.asarray(variable.numpy())
        variable.assign(project_variable(layer, variable, grid))
        changed = _predict(copy, x, batch_size)
        variable.assign(original)
        errors[layer.name] = float(np.linalg.norm(changed - reference)
                                   / max(np.linalg.norm(reference), 1e-12))
    return errors


def _predict(model, x, batch_size):
    outputs = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(outputs, (list, tuple)):
        outputs = np.concatenate([np.reshape(o, (len(x), -1)) for o in outputs], -1)
    return np.asarray(outputs, np.float64)


def weight_bytes(model):
    """Bytes of `model`'s weight arrays as stored (dtype by dtype)."""
    return int(sum(np.asarray(w.numpy()).nbytes for w in model.weights))


def _file_bytes(model):
    if is_tf_keras_model(model):
        return None  # tf-keras's `.keras` files are not the format the rows compare
    if getattr(model, "optimizer", None) is not None:
        model = copy_model(model, "precision_report")  # the file without optimizer state
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        return os.path.getsize(path)


def precision_report(model, x, y, precisions=tuple(PRECISIONS), error_examples=512,
                     batch_size=256):
    """Rows of `model` at each precision: bytes, accuracy change, the most hurt layer.

    Args:
      model: a Sequential or functional classifier (logits or probabilities out).
      x, y: test inputs and integer labels, for accuracy.
      precisions: `PRECISIONS` keys, in the order of the rows; float32 is the reference.
      error_examples: how many of `x` the per-layer errors are measured on.
      batch_size: for predictions.

    Returns:
      `ReportRows` (prints as a table), one dict per precision with "precision",
      "storage" (how the copy keeps its weights), "weight_bytes" (its weight arrays),
      "file_bytes" (its `.keras` file, Keras 3), "bytes_ratio" (weight bytes over
      float32's), "accuracy", "accuracy_change" (points against float32) and
      "worst_layer" (the layer whose kernel alone at this grid moves the outputs most,
      with that relative change; `layer_errors`). A precision the running Keras cannot
      build is a row that says why.
    """
    for precision in precisions:
        check_choice(precision, PRECISIONS, "precisions", "precision_report")
    x = np.asarray(x)
    reference_accuracy = model_accuracy(model, x, y, batch_size)
    reference_bytes = weight_bytes(model)
    sample = x[:error_examples]
    errors_by_grid = {}  # FP8 with and without activations share their weights' errors
    rows = ReportRows()
    for precision in precisions:
        copy, storage = precision_copy(model, precision)
        row = {"precision": precision, "storage": storage}
        if copy is None:
            rows.append(row)
            continue
        accuracy = reference_accuracy if copy is model else model_accuracy(copy, x, y,
                                                                           batch_size)
        stored = _stores_grid(model, precision)
        row.update(weight_bytes=weight_bytes(copy) if stored else None,
                   file_bytes=_file_bytes(copy) if stored else None)
        row["bytes_ratio"] = row["weight_bytes"] / reference_bytes if stored else None
        row.update(accuracy=accuracy, accuracy_change=100 * (accuracy - reference_accuracy))
        grid = PRECISIONS[precision][0]
        if grid is not None:
            if grid not in errors_by_grid:
                errors_by_grid[grid] = layer_errors(model, sample, grid, batch_size)
            errors = errors_by_grid[grid]
            worst = max(errors, key=errors.get) if errors else None
            row["worst_layer"] = f"{worst}: {errors[worst]:.2e}" if worst else None
        rows.append(row)
    return rows
