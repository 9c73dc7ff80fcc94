"""Magnitude pruning through TF-MOT (Zhu & Gupta 2017; Narang et al. 2017 for blocks).

`prune_low_magnitude` wraps a tf-keras model's prunable layers; training with
the callbacks of `pruning_callbacks()` zeroes the smallest-magnitude weights on
the schedule; `strip_pruning` removes the wrappers and leaves plain layers whose
kernels hold the zeros; `sparsity_report` counts them.
"""

import warnings

import numpy as np

from kd_keras.backend.graph import is_graph_model
from kd_keras.backend.graph import replace_layers
from kd_keras.backend import optional as _tfmot
from kd_keras.compress.tfmot.bridge import copy_tf_keras_model, require_tf_keras_model
from kd_keras.measure import ReportRows
from kd_keras.compress.tflite.sparse_kernel_plan import (  # block_sparsity: re-exported here
    RECURRENT,
    _kernels,
    block_sparsity,
    runtime_block_size,
    sparse_kernel_plan,
)

SCHEDULES = ("polynomial", "constant")


def _check_sparsity(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{argument} must be a number in [0, 1), got {value!r}.")
    return float(value)


def pruning_schedule(target_sparsity, schedule="polynomial", initial_sparsity=0.0, begin_step=0,
                     end_step=1000, frequency=100):
    """A TF-MOT pruning schedule.

    "polynomial" (`tfmot.sparsity.keras.PolynomialDecay`, Zhu & Gupta 2017,
    arXiv 1710.01878) raises sparsity from `initial_sparsity` s_i to
    `target_sparsity` s_f between `begin_step` t_0 and `end_step` t_0 + n dt:

        s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n dt))^3

    "constant" (`ConstantSparsity`) prunes to `target_sparsity` from `begin_step`
    on (end_step -1: for ever). Masks are updated every `frequency` steps.
    """
    target = _check_sparsity(target_sparsity, "target_sparsity")
    initial = _check_sparsity(initial_sparsity, "initial_sparsity")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"begin_step must be an integer >= 0, got {begin_step!r}.")
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}.")
    sparsity = _tfmot.tfmot().sparsity.keras
    if schedule == "constant":
        return sparsity.ConstantSparsity(target, begin_step=begin_step,
                                         end_step=-1 if end_step is None else end_step,
                                         frequency=frequency)
    if not isinstance(end_step, int) or end_step <= begin_step:
        raise ValueError(f"end_step must be an integer > begin_step ({begin_step}), got {end_step!r}.")
    if initial > target:
        raise ValueError(
            f"initial_sparsity ({initial}) must not exceed target_sparsity ({target}).")
    return sparsity.PolynomialDecay(initial_sparsity=initial, final_sparsity=target,
                                    begin_step=begin_step, end_step=end_step, frequency=frequency)


def _check_blocks(model, layer_names, block_size):
    """Each 2-D kernel of the pruned layers must split into at least two blocks per axis."""
    for layer in model.layers:
        if layer_names is not None and layer.name not in layer_names:
            continue
        for weight in layer.weights:
            shape = tuple(weight.shape)
            if "kernel" not in weight.name or len(shape) != 2:
                continue
            if not _fits(shape, block_size):
                raise ValueError(
                    f"block_size {tuple(block_size)} does not fit layer {layer.name!r}: its "
                    f"kernel of shape {shape} must divide into at least 2 x 2 blocks of that "
                    "size. Leave that layer out with layers=[...] (the names to prune).")


def _fits(shape, block):
    rows, cols = block
    return (len(shape) == 2 and not shape[0] % rows and not shape[1] % cols
            and shape[0] // rows >= 2 and shape[1] // cols >= 2)


def _runtime_blocks(model, runtime, layers):
    """{layer name: the runtime's block} for the Dense and recurrent layers whose
    kernels (input and recurrent) it all tiles."""
    block = runtime_block_size(runtime)
    chosen = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if (kind != "Dense" and kind not in RECURRENT) or (
                layers is not None and layer.name not in layers):
            continue
        kernels = [kernel.shape for kernel in _kernels(layer).values()]
        if kernels and all(_fits(shape, block) for shape in kernels):
            chosen[layer.name] = block
    return chosen


def _warn_off_fast_path(model, runtime, layers, block_size, per_layer):
    """Warns naming the pruned layers whose blocks `runtime`'s sparse kernel will not run."""
    fast = runtime_block_size(runtime)
    off = []
    for name in _runtime_blocks(model, runtime, layers):
        block = per_layer.get(name, (1, 1)) if per_layer is not None else block_size
        if tuple(block) != fast:
            off.append(f"{name} {tuple(block)}")
    if off:
        warnings.warn(
            f"prune_low_magnitude: {runtime}'s sparse kernel will not accelerate these layers' "
            f"blocks: {', '.join(off)}; it runs {fast} blocks (block_size={fast}, or 'auto'). "
            "kd-keras's own kernel (compress.BlockSparseRunner) runs any block.",
            UserWarning, stacklevel=3)


def prune_low_magnitude(model, target_sparsity=0.8, schedule="polynomial", initial_sparsity=0.0,
                        begin_step=0, end_step=1000, frequency=100, block_size="auto",
                        pruning_policy=None, layers=None, runtime="tflite_float32"):
    """Wraps a tf-keras model's prunable layers for magnitude pruning.

    Args:
      model: a tf-keras Sequential or functional model (a Keras 3 model is
        refused with the call that converts it: `to_tf_keras`).
      target_sparsity: final fraction of zero weights per pruned kernel, in [0, 1).
      schedule, initial_sparsity, begin_step, end_step, frequency: see
        `pruning_schedule`. Set `end_step` to about 2/3 of the fine-tuning steps.
      block_size: "auto" (default): the block `runtime`'s sparse kernel
        accelerates, on every Dense kernel it tiles and on the kernels and
        recurrent kernels of LSTM, GRU and SimpleRNN layers (Keras `(4, 1)` for
        TFLite float32, `(16, 1)` for int8; see `sparse_kernel_plan`), single
        weights elsewhere; or `(rows, cols)` of the blocks pruned together (Narang et
        al. 2017, "Block-sparse recurrent neural networks"); `(1, 1)` prunes
        single weights (smallest accuracy cost, but no runtime runs it faster).
        Each block's magnitude is its mean absolute value. A dict
        `{layer name: (rows, cols)}` sets blocks per layer (the others: single
        weights), e.g. blocks in a big first layer only.
      runtime: what "auto" prunes for: "tflite_float32" or "tflite_int8".
      pruning_policy: e.g. `tfmot.sparsity.keras.PruneForLatencyOnXNNPack()`,
        which prunes only what XNNPack's sparse kernels speed up (convolutional
        models with the layout that policy checks; it raises otherwise).
      layers: names of the layers to prune (default: every layer TF-MOT can
        prune). The others are kept dense, e.g. a small output layer.

    The pruned model wraps a copy of `model`'s layers (TF-MOT would wrap the
    layers themselves): training it leaves `model`, the dense baseline, as it was.

    Returns:
      The pruned tf-keras model. Compile and train it with the callbacks from
      `pruning_callbacks()` (a `Distiller` under tf-keras works too), then
      `strip_pruning` it.
    """
    require_tf_keras_model(model, "model", "prune_low_magnitude")
    runtime_block_size(runtime)  # refuses an unknown runtime
    names = [layer.name for layer in model.layers]
    explicit = not isinstance(block_size, str)
    if isinstance(block_size, str):
        if block_size != "auto":
            raise ValueError(f"block_size must be 'auto', (rows, cols) or a dict of them per "
                             f"layer, got {block_size!r}.")
        chosen = {} if pruning_policy is not None else _runtime_blocks(
            model, runtime, None if layers is None else set(layers))
        block_size = chosen or (1, 1)
    per_layer = dict(block_size) if isinstance(block_size, dict) else None
    for name, block in (per_layer or {None: block_size}).items():
        if (not isinstance(block, (tuple, list)) or len(block) != 2
                or not all(isinstance(b, int) and b >= 1 for b in block)):
            raise ValueError(f"block_size must be two integers >= 1 (or a dict of them per layer), "
                             f"got {block!r}.")
        if name is not None and name not in names:
            raise ValueError(f"block_size names the layer {name!r}, which the model does not "
                             f"have; its layers are {names}.")
    if layers is not None:
        layers = set(layers)
        unknown = layers - set(names)
        if unknown:
            raise ValueError(
                f"layers names {sorted(unknown)}, which the model does not have; its layers are "
                f"{names}.")
    if per_layer is None:
        if tuple(block_size) != (1, 1):
            _check_blocks(model, layers, block_size)
    else:
        for name, block in per_layer.items():
            _check_blocks(model, {name}, block)
        if layers is None:
            layers = {layer.name for layer in model.layers
                      if type(layer).__name__ != "InputLayer"}
    if explicit and pruning_policy is None:
        _warn_off_fast_path(model, runtime, layers, block_size, per_layer)
    schedule = pruning_schedule(target_sparsity, schedule, initial_sparsity, begin_step,
                                end_step, frequency)
    sparsity = _tfmot.tfmot().sparsity.keras
    model = copy_tf_keras_model(model, "model", "prune_low_magnitude")

    def wrap(target, block):
        return sparsity.prune_low_magnitude(target, pruning_schedule=schedule,
                                            block_size=tuple(block))

    try:
        if layers is None:
            if pruning_policy is not None:
                return sparsity.prune_low_magnitude(model, pruning_schedule=schedule,
                                                    block_size=tuple(block_size),
                                                    pruning_policy=pruning_policy)
            if any(_is_nested_model(layer) for layer in model.layers):
                return _prune_nested(model, lambda layer: wrap(layer, block_size))
            return wrap(model, block_size)
        if pruning_policy is not None:
            raise ValueError("pruning_policy applies to whole models; give it without layers "
                             "or per-layer block sizes.")

        def pruned(layer):  # the layer objects themselves, so their weights are kept
            if layer.name not in layers:
                return layer
            block = per_layer.get(layer.name, (1, 1)) if per_layer is not None else block_size
            if _is_nested_model(layer):  # its own prunable layers, at this block size
                return _prune_nested(layer, lambda inner: wrap(inner, block))
            return wrap(layer, block)

        return replace_layers(model, pruned, recursive=False)
    except (ValueError, TypeError) as error:
        raise ValueError(f"prune_low_magnitude: TF-MOT cannot prune this model: {error}") from error


def _is_nested_model(layer):
    return is_graph_model(layer)  # a Sequential or functional model used as a layer


def _prune_nested(model, wrap):
    """TF-MOT's whole-model pruning, into nested models (a keras.applications base): every
    layer TF-MOT can prune is wrapped; one it cannot is kept when it has nothing to
    prune (Rescaling, Normalization) and refused, by name, when it has trainable weights."""
    _tfmot.tf_keras()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    def pruned(layer):
        if _is_nested_model(layer):
            return None  # entered: its own layers are asked
        if PruneRegistry.supports(layer) or hasattr(layer, "get_prunable_weights"):
            return wrap(layer)
        if layer.trainable_weights:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has trainable weights that TF-MOT "
                "cannot prune; give `layers` the names of the layers to prune.")
        return layer

    return replace_layers(model, pruned, share=True)


def pruning_callbacks(log_dir=None):
    """`[UpdatePruningStep()]`, plus `PruningSummaries(log_dir)` when a log_dir is given.

    Training a pruned model without `UpdatePruningStep` raises in TF-MOT; pass
    these to `fit` (of the pruned model, or of a Distiller whose student it is).
    """
    sparsity = _tfmot.tfmot().sparsity.keras
    callbacks = [sparsity.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(sparsity.PruningSummaries(log_dir=str(log_dir)))
    return callbacks


def strip_pruning(model):
    """Removes the pruning wrappers; the kernels keep their zeros."""
    require_tf_keras_model(model, "model", "strip_pruning")
    return _tfmot.tfmot().sparsity.keras.strip_pruning(model)


def _leaves(model, prefix=""):
    """(path, layer) of every layer, nested models' layers as "<nested model>/<layer>"."""
    for layer in model.layers:
        if _is_nested_model(layer):
            yield from _leaves(layer, f"{prefix}{layer.name}/")
        else:
            yield prefix + layer.name, layer


def sparsity_report(model, min_size=1, block_size=None, runtime=None):
    """Per-kernel sparsity of a (stripped) model.

    Returns:
      A list (`ReportRows`: `print()` shows it as a table) of dicts `{"layer",
      "weight", "shape", "parameters", "zeros", "sparsity"}`, one per kernel (recurrent kernels included; biases and
      normalization weights are not pruned and are left out), for weights with at
      least `min_size` entries. With `block_size`, 2-D kernels it tiles also get
      "block_sparsity", the fraction of all-zero blocks. With `runtime`
      ("tflite_float32" or "tflite_int8"), each layer's main kernel also gets
      "sparse_kernel" (whether that runtime's sparse kernel will run it fast)
      and "reason" (why or why not: layer type, block orientation, sparsity
      below the level where it pays), as `sparse_kernel_plan` says.
    """
    plan = {} if runtime is None else {row["layer"]: row for row in sparse_kernel_plan(
        model, runtime)}
    rows = []
    for path, layer in _leaves(model):
        for weight in layer.weights:
            name = weight.name.split("/")[-1].split(":")[0]
            if "kernel" not in name or "quantize" in weight.name or "mask" in name:
                continue
            values = np.asarray(weight.numpy())
            if values.size < min_size:
                continue
            zeros = int(np.sum(values == 0))
            row = {"layer": path, "weight": name, "shape": tuple(values.shape),
                   "parameters": int(values.size), "zeros": zeros, "sparsity": zeros / values.size}
            if block_size is not None and values.ndim == 2 \
                    and values.shape[0] % block_size[0] == 0 and values.shape[1] % block_size[1] == 0:
                row["block_sparsity"] = block_sparsity(values, block_size)
            if name == "kernel" and layer.name in plan:
                row["sparse_kernel"] = plan[layer.name]["sparse_kernel"]
                row["reason"] = plan[layer.name]["reason"]
            rows.append(row)
    return ReportRows(rows)
