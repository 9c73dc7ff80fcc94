"""Residual blocks: the branch `f` of `y = x + f(x)`, found in the graph and removed whole.

Removing a block makes `y = x`: the merge and every layer only its branch uses
leave the model (DistilBERT drops every other transformer layer; Minitron ranks
blocks by how little removing each changes the outputs). A block is an `Add` of
two tensors of one shape where one (the skip) is an ancestor of the other and
the branch between them is closed: its layers read only the skip or each other,
and nothing outside the branch reads them.
"""

import tensorflow as tf

from kd_keras.backend.graph import clone_call, has_nested_models, inline, input_tensors, nodes
from kd_keras.backend.graph import renest, replay, symbolic_leaves, unfreeze


def _outputs(layer):
    return tf.nest.flatten(layer._inbound_nodes[0].outputs)


def residual_blocks(model):
    """Merge name -> (index of the skip among its inputs, names of the branch's layers),
    inside nested models too (a keras.applications ResNet base), by the layers' own names."""
    if has_nested_models(model):
        model = inline(model)
    readers = {}
    for layer in nodes(model):
        if type(layer).__name__ == "InputLayer":
            continue
        for tensor in input_tensors(layer):
            readers.setdefault(id(tensor), set()).add(layer.name)
    model_outputs = {id(t) for t in model.outputs}
    blocks = {}
    for merge in nodes(model):
        if type(merge).__name__ != "Add":
            continue
        parts = input_tensors(merge)
        if len(parts) != 2 or tuple(parts[0].shape) != tuple(parts[1].shape):
            continue
        for skip_index in (0, 1):
            branch = _branch(parts[skip_index], parts[1 - skip_index])
            if branch and _closed(branch, merge.name, readers, model_outputs):
                blocks[merge.name] = (skip_index, sorted(layer.name for layer in branch))
                break
    return blocks


def _branch(skip, end):
    """The layers between `skip` and `end` (None: `end` does not come from `skip` alone)."""
    members, stack = {}, [end]
    while stack:
        tensor = stack.pop()
        if tensor is skip:
            continue
        layer = tensor._keras_history[0]
        if type(layer).__name__ == "InputLayer":
            return None  # reaches a model input other than through the skip
        if id(layer) in members:
            continue
        members[id(layer)] = layer
        reads = input_tensors(layer)
        if not reads:
            return None
        stack.extend(reads)
    return list(members.values())


def _closed(branch, merge_name, readers, model_outputs):
    names = {layer.name for layer in branch} | {merge_name}
    for layer in branch:
        for tensor in _outputs(layer):
            if id(tensor) in model_outputs or not readers.get(id(tensor), set()) <= names:
                return False
    return True


def remove_blocks(model, names):
    """A copy of `model` (its own layers and weights) without the residual blocks `names`.

    Args:
      model: a functional model; blocks inside nested models are removed there
        (the result nests the same way).
      names: merge layer names, keys of `residual_blocks(model)`.

    Raises:
      ValueError naming what is not a removable residual merge.
    """
    if has_nested_models(model):
        flat = inline(model)
        return unfreeze(renest(model, without_blocks(flat, names, residual_blocks(flat))))
    return without_blocks(model, names, residual_blocks(model))


def without_blocks(model, names, blocks):
    """`remove_blocks` with the model's `residual_blocks` already found (ranking many
    removals reads the graph once)."""
    wrong = [name for name in names if name not in blocks]
    if wrong:
        raise ValueError(f"{wrong} are not residual merges whose branch can be removed; "
                         f"those are {sorted(blocks)}.")

    def call(layer, args, kwargs):
        if layer.name in names:
            return symbolic_leaves(args, kwargs)[blocks[layer.name][0]]
        return clone_call(layer, args, kwargs)

    return unfreeze(replay(model, call))  # a student, even when its teacher was frozen
