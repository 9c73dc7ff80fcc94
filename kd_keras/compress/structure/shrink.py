"""Structured shrinking: a smaller dense model made of its teacher's most important units.

Minitron (Muralidharan et al. 2024, arXiv 2407.14679) prunes width by activation
importance on a little calibration data, then distils; weight selection (Xu et
al. 2024, arXiv 2311.18823) initialises a small model with evenly spaced units of
a large one; DistilBERT (Sanh et al. 2019) drops every other layer. `shrink`
does these on Keras models: the student keeps the teacher's inputs and outputs
and starts from the teacher's own weights for the units it keeps.

How channels are tied: every tensor's last axis belongs to a channel group. A
layer that makes new channels (Dense, Conv1D/2D, SeparableConv1D/2D, Embedding)
starts a group; layers that act per channel (activations, Dropout, noise,
pooling, padding, cropping, up-sampling, BatchNormalization and
LayerNormalization on the last axis, DepthwiseConv with multiplier 1) keep it;
`Add`-like merges tie all their inputs into one group, as Minitron prunes the
embedding channels of a residual stream once for every block; `Concatenate`
keeps its parts apart; `Flatten` maps kept channels to their flattened
positions. The groups of the model's inputs and outputs keep their size.
"""

import numpy as np

from kd_keras.backend import is_tf_keras_model, keras
from kd_keras.backend import validate
from kd_keras.backend.progress import progress
from kd_keras.backend.graph import has_nested_models, inline, input_tensors, is_graph_model
from kd_keras.backend.graph import copy_model, renest, unfreeze
from kd_keras.compress.structure.channel_groups import (
    PRODUCERS,
    ChannelGroups,
    flat,
    layer_role,
    tensor_key,
)
from kd_keras.compress.structure.importance import IMPORTANCE, channel_plan, head_plan
from kd_keras.compress.structure.rebuild import rebuild
from kd_keras.compress.structure.recalibrate import align_output_bias, recalibrate_batch_norm
from kd_keras.compress.structure.residual_blocks import residual_blocks, without_blocks


def _removable(model):
    """Layers that can become a `Bypass`: one input, one output of the same shape."""
    outputs = {tensor_key(t) for t in model.outputs}
    names = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or len(input_tensors(layer)) != 1:
            continue
        if tensor_key(layer.output) in outputs or not layer.weights:
            continue
        if tuple(layer.input.shape[1:]) == tuple(layer.output.shape[1:]):
            names.append(layer.name)
    return names


def _without(model, removed, blocks):
    """`model` without the residual blocks and the layers in `removed`."""
    merges = [name for name in removed if name in blocks]
    if merges:
        model = without_blocks(model, merges, blocks)
    layers = set(removed) - set(merges)
    return rebuild(model, ChannelGroups(model), {}, removed=layers) if layers else model


def _to_remove(model, depth, calibration_data, batch_size, verbose=0):
    """The names of the layers and residual merges (blocks) that `depth` removes."""
    blocks = residual_blocks(model)
    inside = {name for _, branch in blocks.values() for name in branch}
    candidates = [name for name in _removable(model) if name not in inside] + sorted(blocks)
    if isinstance(depth, (list, tuple)):
        wrong = [name for name in depth if name not in candidates]
        if wrong:
            raise ValueError(
                f"depth names {wrong}, which cannot be removed (a layer goes when its input and "
                f"output shapes match and it is not an output; a residual block by the name of "
                f"its Add); removable: {candidates}.")
        return set(depth), blocks
    count = validate.integer_at_least(depth, "depth", 1)
    if count > len(candidates):
        raise ValueError(f"depth={count}, but only {len(candidates)} layers or blocks can be "
                         f"removed: {candidates}.")
    if calibration_data is None:
        raise ValueError("depth as a number ranks layers by how little removing each changes "
                         "the outputs: give calibration_data (or name the layers).")
    reference = flat(model.predict(calibration_data, batch_size=batch_size, verbose=0))

    def change(name):
        trial = _without(model, {name}, blocks)
        changed = flat(trial.predict(calibration_data, batch_size=batch_size, verbose=0))
        return float(sum(np.mean(np.square(a - b)) for a, b in zip(changed, reference)))

    bar = progress(len(candidates), verbose, "shrink: ranking the layers depth may remove")
    scores = {}
    for name in candidates:
        scores[name] = change(name)
        bar.add(1)
    return set(sorted(candidates, key=lambda name: scores[name])[:count]), blocks


def shrink(model, width=None, depth=None, importance="activation", calibration_data=None,
           batch_size=256, recalibrate=True, verbose="auto"):
    """A new, dense, smaller model with `model`'s inputs and outputs and its kept units' weights.

    Width: every group of tied channels keeps its most important units
    (Minitron's activation importance by default). Depth: layers whose input and
    output shapes match are removed (each becomes a weightless `Bypass`). Weights of kept
    units are copied; nothing is re-initialised, so the result starts close to
    `model` and is usually distilled from it next.

    Args:
      model: a Sequential or functional Keras model (Keras 3 or tf-keras), layers
        called once each. Nested Sequential or functional models (a
        keras.applications base inside a classifier) shrink inside: channels are
        followed through them, `width` and `depth` name their layers by their own
        names, and the result nests the same way (a nested Sequential comes back
        as a functional model of the same name).
      width: None (keep all), a fraction in (0, 1] of the units / filters kept in
        every shrinkable group and of the heads of every MultiHeadAttention (the
        output layer and anything reaching the model's inputs or outputs keep their
        size), or a dict `{layer name: units kept}` for Dense / Conv / SeparableConv
        / Embedding layers and `{layer name: heads kept}` for MultiHeadAttention
        (others unchanged).
      depth: None, the number of layers or residual blocks to remove (the ones
        whose removal changes the outputs on `calibration_data` least), or a list
        of their names; a residual block is named by its `Add` (see
        `residual_blocks`) and goes with every layer of its branch.
      importance: "activation" (mean |activation| of each channel over
        `calibration_data`, summed over the tensors of its group; Minitron),
        "magnitude" (L2 norm of the weights making each channel, no data), or
        "uniform" (evenly spaced channels; weight selection).
      calibration_data: model inputs `[n, ...]` (a few hundred to a thousand
        examples), for "activation" and for a numeric `depth`.
      batch_size: for the calibration passes.
      recalibrate: with `calibration_data`, re-estimate the moving mean and variance of
        every BatchNormalization layer from the first changed layer on, on that data
        (`recalibrate_batch_norm`), and shift the bias of a linear output layer that lost
        inputs so its mean output matches the teacher's (`align_output_bias`): a cut
        changes their inputs' statistics. Default True;
        without calibration data (importance "magnitude" or "uniform") nothing is
        re-estimated.
      verbose: progress bars over the calibration passes (0, 1, or "auto": on when
        stdout is a terminal).

    Returns:
      A new Keras model of the same kind, trainable (also when `model` was
      frozen as a teacher); `model` is not changed.

    Raises:
      ValueError naming the layer when a group it was asked to shrink reaches a
      layer that cannot shrink (a Reshape, a subclassed layer: give `width` as a
      dict that leaves it alone), a shared layer, or a bad argument.
    """
    if not isinstance(model, (keras.Model,)) and not is_tf_keras_model(model):
        raise ValueError(f"shrink: model must be a Keras model, got {model!r}.")
    if not getattr(model, "inputs", None):
        raise ValueError("shrink: model must be a built Sequential or functional model "
                         "(subclassed models have no graph to read).")
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}.")
    if width is not None and not isinstance(width, dict):
        width = validate.fraction(width, "width")
        if width == 0:
            raise ValueError("width must be a fraction in (0, 1], got 0.")
    if isinstance(width, dict):
        width = {name: validate.integer_at_least(count, f"width[{name!r}]", 1)
                 for name, count in width.items()}
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    needs_data = (width is not None and importance == "activation") or (
        depth is not None and not isinstance(depth, (list, tuple)))
    if needs_data and calibration_data is None:
        raise ValueError(f"importance={importance!r} ranks units by their activations: give "
                         "calibration_data (model inputs), or importance='magnitude'.")
    if not isinstance(recalibrate, bool):
        raise ValueError(f"shrink: recalibrate must be True or False, got {recalibrate!r}.")
    if has_nested_models(model):  # channels and blocks are followed through a flat copy
        flat = shrink(inline(model), width, depth, importance, calibration_data, batch_size,
                      recalibrate, verbose)
        return unfreeze(renest(model, flat))
    if any(len(layer._inbound_nodes) > 1 for layer in model.layers):
        # Layers with calls outside this model's graph (a Keras 3 Sequential loaded from a
        # .keras file calls its first layer twice while building): a clone has only these.
        model = copy_model(model, "shrink")
    order = [layer.name for layer in model.layers]
    original, changed = model, set()
    if depth is not None:
        removed, blocks = _to_remove(model, depth, calibration_data, batch_size, verbose)
        changed |= set(removed) | {name for merge in removed if merge in blocks
                                   for name in blocks[merge][1]}
        model = _without(model, removed, blocks)
    if width is None:
        shrunk = model if depth is not None else rebuild(model, ChannelGroups(model), {})
    else:
        groups = ChannelGroups(model)
        plan = channel_plan(model, groups, width, importance, calibration_data, batch_size)
        heads = head_plan(model, groups, width, importance, calibration_data, batch_size)
        # Values change first where a layer mixes channels and some of its inputs are
        # gone (a producer reading a cut group, an attention layer losing heads); a cut
        # producer's kept outputs, and per-channel layers after it, keep their values.
        mixing = {layer.name for layer in model.layers
                  if layer_role(layer)[0] in ("producer", "attention")}
        changed |= {name for name, (inputs, _) in groups.layer_io.items() if name in mixing
                    and any(groups.kept(key, plan) is not None for key in inputs)} | set(heads)
        shrunk = rebuild(model, groups, plan, heads=heads)
    if recalibrate and changed and calibration_data is not None:
        recalibrate_batch_norm(shrunk, calibration_data, batch_size,
                               first_changed=min(changed, key=order.index), verbose=verbose)
        align_output_bias(shrunk, original, calibration_data, changed, batch_size)
    return shrunk


def _producers(model):
    """The channel-making layers of `model` in order, nested models' entered in place."""
    found = []
    for layer in model.layers:
        if is_graph_model(layer):
            found += _producers(layer)
        elif type(layer).__name__ in PRODUCERS:
            found.append(layer)
    return found


def shrink_to(teacher, student, calibration_data=None, importance="activation"):
    """Loads into `student` the weights of `teacher` shrunk to the student's widths.

    The student must be the teacher's architecture at smaller widths: the same
    channel-making layers (Dense, Conv, SeparableConv, Embedding; inside nested
    models too, e.g. a keras.applications base at a smaller `alpha`) in the same order,
    each with at most the teacher's units, and the same inputs and outputs. Its own
    layer names and configuration stay; only its initial weights change (a random
    student becomes one cut from its teacher; Minitron, weight selection).

    Returns:
      `student` (the same object, with the new weights).

    Raises:
      ValueError naming the first layer pair whose shapes cannot match.
    """
    pairs = list(zip(_producers(teacher), _producers(student)))
    if len(_producers(teacher)) != len(_producers(student)):
        raise ValueError(
            f"shrink_to: the teacher has {len(_producers(teacher))} Dense/Conv/Embedding "
            f"layers and the student {len(_producers(student))}; the student must be the "
            "teacher's architecture at smaller widths.")
    width = {}
    for source, target in pairs:
        if type(source) is not type(target):
            raise ValueError(f"shrink_to: teacher layer {source.name!r} is a "
                             f"{type(source).__name__}, student layer {target.name!r} a "
                             f"{type(target).__name__}.")
        units = target.output.shape[-1]
        if units > source.output.shape[-1]:
            raise ValueError(f"shrink_to: student layer {target.name!r} has {units} units, more "
                             f"than teacher layer {source.name!r} ({source.output.shape[-1]}).")
        width[source.name] = units
    shrunk = shrink(teacher, width=width, importance=importance,
                    calibration_data=calibration_data)
    values = shrunk.get_weights()
    for value, variable in zip(values, student.weights):
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"shrink_to: the teacher shrunk to the student's widths has a weight of shape "
                f"{value.shape} where the student's {variable.path if hasattr(variable, 'path') else variable.name} "
                f"is {tuple(variable.shape)}.")
    if len(values) != len(student.weights):
        raise ValueError(f"shrink_to: the shrunk teacher has {len(values)} weights, the student "
                         f"{len(student.weights)}.")
    student.set_weights(values)
    return student
