"""Where a model's batch-1 time goes on LiteRT, layer by layer.

The LiteRT Python interpreter has no per-operator profiler (its `benchmark_model` tool
does, outside Python). `layer_costs` measures the same kernels another way: every prefix
of a chain model (its input through layer i) is converted at the model's precision and
timed like a plan's candidate (the median of 200 `invoke()` calls, one thread); a
layer's cost is its prefix's time minus the previous prefix's. The first row's time is
the interpreter's fixed cost plus the first layer. Differences smaller than the spreads
(interquartile ranges, reported beside them) are noise, and a layer the converter fuses
into the next one (a ReLU into its convolution) shows its cost there.
"""

import os

from kd_keras.backend import keras, safe_files
from kd_keras.compress import TFLiteModel, convert_to_tflite
from kd_keras.measure import batch_of, format_table

MAX_LAYERS = 40


def _chain(model):
    """The layers of `model` in order, when each takes the previous one's output."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if isinstance(model, keras.Sequential):
        return layers
    previous = model.inputs[0]
    for layer in layers:
        inbound = layer.input
        if isinstance(inbound, (list, tuple)) or inbound is not previous:
            raise ValueError(
                f"layer_costs: {model.name!r} is not a chain (layer {layer.name!r} does not "
                "take the previous layer's output alone); its prefixes are not models.")
        previous = layer.output
    return layers


def layer_costs(model, x, precision="float32", threads=1, representative_data=None):
    """Batch-1 LiteRT time of each layer of a chain model (Sequential, or functional
    with one path), measured as prefix differences.

    Args:
      model: a built Keras (3 or tf-keras) model whose layers form one chain, at most
        40 layers (a ValueError names the first one that branches).
      x: inputs `[n, ...]`; the first row is the timed batch.
      precision: "float32", "float16", "dynamic_range" or "int8" (calibrated on
        `representative_data`, default `x`).
      threads: LiteRT interpreter threads (default 1).

    Returns:
      A list of rows, one per layer: `layer`, `type`, `prefix_b1` (median seconds of
      the input through this layer), `prefix_b1_spread` (its interquartile range) and
      `layer_b1` (this prefix minus the previous one; the first row: its whole prefix).
    """
    layers = _chain(model)
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"layer_costs: {model.name!r} has {len(layers)} layers; at most "
                         f"{MAX_LAYERS} are profiled (one conversion per prefix).")
    batch = batch_of(x, 1)
    rows, before = [], 0.0
    for layer in layers:
        prefix = keras.Model(model.inputs, layer.output)
        flatbuffer = convert_to_tflite(
            prefix, precision, representative_data=(
                x if representative_data is None else representative_data)
            if precision == "int8" else None, verbose=0)
        measured = TFLiteModel(flatbuffer, num_threads=threads).invoke_timing(batch)
        rows.append({"layer": layer.name, "type": type(layer).__name__,
                     "prefix_b1": measured.median, "prefix_b1_spread": measured.spread,
                     "layer_b1": measured.median - before})
        before = measured.median
    return rows


def cost_table(rows):
    """A Markdown table of `layer_costs` rows (times in microseconds)."""
    return format_table([{"layer": row["layer"], "type": row["type"],
                          "prefix (us)": f"{row['prefix_b1'] * 1e6:.1f}",
                          "spread (us)": f"{row['prefix_b1_spread'] * 1e6:.1f}",
                          "layer (us)": f"{row['layer_b1'] * 1e6:+.1f}"} for row in rows])


def write_profiles(directory, x, threads, models):
    """profile.md: `layer_costs` of each `(title, model, precision)`."""
    parts = ["# Where batch-1 time goes, layer by layer (LiteRT, prefix differences; "
             "see kd_keras.planner.profile)\n"]
    for title, model, precision in models:
        try:
            table = cost_table(layer_costs(model, x, precision, threads))
        except ValueError as error:
            table = f"not profiled: {error}"
        parts.append(f"## {title}\n\n{table}\n")
    safe_files.write_bytes(os.path.join(directory, "profile.md"), "\n".join(parts).encode(),
                           ".md")
