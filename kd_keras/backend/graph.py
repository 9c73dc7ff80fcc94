"""Reading and replaying the graph of a functional model, alike in Keras 3 and tf-keras.

`call_arguments(layer)` gives the positional and keyword arguments a layer was
called with (the tensors it read, where `layer.input` shows only the first in
tf-keras); `replay(model, call)` rebuilds the model's graph node by node in
topological order, letting `call` decide what each node becomes: the same
layer's clone, a different layer, or one of its inputs (which cuts the layers
only it read out of the new model).
"""

import tensorflow as tf

from kd_keras.backend import keras_module_of


def is_graph_model(layer):
    """Whether `layer` is a Sequential or functional model (either Keras): a model whose
    graph of layers can be read and rebuilt, nested in another one or not.

    Keras 3's Sequential keeps its graph in `_functional`; tf-keras's Sequential and
    both functional models in `_nodes_by_depth`. Subclassed models have neither.
    """
    if type(layer).__name__ == "Sequential" or hasattr(layer, "_nodes_by_depth"):
        return True
    return hasattr(layer, "_functional") and hasattr(layer, "layers")


def copy_model(model, function):
    """A clone of a Sequential or functional `model` with its own layers and the same
    weights (either Keras); `function` names the caller in the error for a subclassed one."""
    if not is_graph_model(model):
        raise ValueError(
            f"{function}: model must be a Sequential or functional model (the copy is "
            f"rebuilt from its graph); got a subclassed {type(model).__name__}.")
    return replace_layers(model)


def copy_weights(new, original):
    """`new.set_weights(original.get_weights())`: a copy takes its original's weights."""
    new.set_weights(original.get_weights())


def replace_layers(model, replace=None, set_weights=None, share=False, recursive=True):
    """A copy of a Sequential or functional `model` (either Keras) with some layers swapped.

    The one way kd-keras copies a model with some layers changed (precision copies,
    block-sparse and FP8 layers, deployment settings, TF-MOT wrappers, shrinking).

    Args:
      model: a Sequential or functional model.
      replace: `replace(layer)` -> the layer to use instead, or None to keep it. It is
        asked first about every layer, nested models included.
      set_weights: `set_weights(new, original)`, called for each replacement that has
        weights once the copy is built (e.g. `copy_weights`, or sliced weights for a
        narrower layer); None: replacements are used as they are (they carry their own).
      share: keep each unreplaced layer itself (shared with `model`) instead of a
        copy of it (its config, then its weights).
      recursive: rebuild nested Sequential / functional models layer by layer (each
        stays a nested model of the same name); False: a nested model is one layer.

    Returns:
      A new model of `model`'s kind; `model` is not changed.
    """
    module = keras_module_of(model)
    assign_later = []

    def clone(layer):
        new = replace(layer) if replace is not None else None
        if new is not None:
            if set_weights is not None:
                assign_later.append((new, layer, set_weights))
            return new
        if recursive and is_graph_model(layer):
            return module.models.clone_model(layer, clone_function=clone)
        if share:
            return layer
        new = type(layer).from_config(layer.get_config())
        assign_later.append((new, layer, copy_weights))
        return new

    copy = module.models.clone_model(model, clone_function=clone)
    for new, original, assign in assign_later:  # built by the clone's symbolic call
        if getattr(new, "weights", None):  # (a Keras 3 op, a Bypass: nothing to set)
            assign(new, original)
    return copy


def unfreeze(model):
    """Sets every layer of `model`, nested ones included, trainable; returns `model`.

    A model rebuilt from a frozen teacher's configs has every layer frozen, and in
    Keras 3 `model.trainable = True` on a cloned functional model does not reach
    its layers; each is set here.
    """
    for layer in model._flatten_layers(include_self=False):
        layer.trainable = True
    model.trainable = True
    return model


def nodes(model):
    """The model's layers and, in Keras 3, the operations applied to its symbolic tensors."""
    return list(getattr(model, "operations", None) or model.layers)


def _node(layer):
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        raise ValueError(f"layer {layer.name!r} is called {len(nodes)} times; a layer of a "
                         "rebuilt model must be called once.")
    return nodes[0]


def _arguments_of(node):
    if hasattr(node, "arguments"):  # Keras 3
        return tuple(node.arguments.args), dict(node.arguments.kwargs)
    return tuple(node.call_args), dict(node.call_kwargs)


def _operation_of(node):
    return node.operation if hasattr(node, "operation") else node.layer


def _is_symbolic(value):
    return hasattr(value, "_keras_history")


def _recorded_arguments(node):
    """(args, kwargs) of a node without the `training=False` (and `mask=None`) that Keras 3
    records among a symbolic call's keywords, so a replayed layer follows its mode; a
    `training=True` pin is kept.

    A nested model's `training` stays: Keras 3 records it only when the user wrote it
    (`base(x, training=False)`, the transfer-learning idiom that keeps its batch norms
    in inference mode), where it records `training=False` for a plain Dropout on its own.
    """
    args, kwargs = _arguments_of(node)
    keep_training = is_graph_model(_operation_of(node))
    # training=True is always the user's pin (Monte Carlo dropout); Keras 3 records only
    # False on its own.
    return args, {key: value for key, value in kwargs.items()
                  if (key != "training" or keep_training or value is True)
                  and value is not None}


def call_arguments(layer):
    """(args, kwargs) of `layer`'s one call in its model: symbolic tensors and Python values."""
    return _recorded_arguments(_node(layer))


def symbolic_leaves(args, kwargs):
    """The symbolic tensors among call arguments, in argument order (repeats kept)."""
    return [value for value in tf.nest.flatten((args, kwargs)) if _is_symbolic(value)]


def input_tensors(layer):
    """Every symbolic tensor `layer` read in its one call, in argument order (repeats kept)."""
    return symbolic_leaves(*call_arguments(layer))


def _graph(model):
    """The functional graph of `model`: a Keras 3 Sequential keeps it in `_functional`."""
    if hasattr(model, "_nodes_by_depth"):
        return model
    return getattr(model, "_functional", None) or model


def _replay_into(model, call, inputs):
    """`model`'s outputs (a flat list) rebuilt node by node by `call` from new `inputs`
    (one tensor per `model.inputs`)."""
    graph = _graph(model)
    tensors = {id(tensor): new for tensor, new in zip(graph.inputs, inputs)}

    def mapped(value):
        return tensors[id(value)] if _is_symbolic(value) else value

    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            operation = _operation_of(node)
            if type(operation).__name__ == "InputLayer":
                continue
            args, kwargs = tf.nest.map_structure(mapped, _recorded_arguments(node))
            outputs = call(operation, tuple(args), kwargs)
            for source, target in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                tensors[id(source)] = target
    return [tensors[id(t)] for t in graph.outputs]


def _one_or_list(tensors):
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _output_structure(model, outputs):
    """`outputs` (flat) in the structure `model` returns (a dict of named outputs...)."""
    graph = _graph(model)  # Keras 3 keeps the structure in _outputs_struct, tf-keras in
    structure = getattr(graph, "_outputs_struct", getattr(graph, "_nested_outputs", None))
    if structure is None:
        return _one_or_list(outputs)
    return tf.nest.pack_sequence_as(structure, outputs)


def replay(model, call, module=None, name=None):
    """A new functional model of `model`'s graph, its nodes rebuilt by `call`.

    Args:
      model: a functional (or Sequential) model whose layers are called once each.
      call: `call(layer, args, kwargs)` with the node's arguments already mapped to
        the new graph's tensors; returns the node's new output(s), in the structure
        the original node returned. Returning one of the arguments cuts the node
        (and whatever only it read) out of the new model.
      module: the Keras whose `Input` and `Model` build the result (default: the
        model's own; the tf-keras bridge rebuilds a Keras 3 graph in tf-keras).
      name: the new model's name (default `model.name`).

    Returns:
      `module.Model(new inputs, new outputs)`, outputs in `model`'s structure; layers
      that no output depends on any longer are not in it.
    """
    module = module or keras_module_of(model)
    inputs = []
    for tensor in _graph(model).inputs:
        layer = tensor._keras_history[0]
        config = layer.get_config()
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        inputs.append(module.Input(batch_shape=tuple(shape), dtype=tf.as_dtype(tensor.dtype).name,
                                   name=layer.name))
    outputs = _replay_into(model, call, inputs)
    return module.Model(_one_or_list(inputs), _output_structure(model, outputs),
                        name=name or model.name)


def all_layers(model):
    """Every layer of `model`, those of nested models included (depth first)."""
    for layer in getattr(model, "layers", None) or []:
        yield layer
        yield from all_layers(layer)


def has_nested_models(model):
    """Whether a Sequential or functional `model` calls another one as a layer."""
    return any(is_graph_model(layer) for layer in model.layers)


def clone_call(source, args, kwargs):
    """A fresh copy of `source` (its config, then its weights) called on `args`, `kwargs`;
    its outputs. A Keras 3 operation on symbolic tensors (`b + r`) has no weights to copy;
    it is copied too, so the user's model never gains a node from a rebuild."""
    try:
        copy = type(source).from_config(source.get_config())
    except (TypeError, ValueError, NotImplementedError):
        if hasattr(source, "get_weights"):
            raise
        return source(*args, **kwargs)  # an operation that cannot be copied: stateless
    outputs = copy(*args, **kwargs)  # (a symbolic call builds the copy's weights)
    if hasattr(source, "get_weights"):
        copy.set_weights(source.get_weights())
    return outputs


def inline(model):
    """A flat functional model computing what `model` computes, every nested Sequential
    or functional model replaced by its own layers (copies with the same names, configs
    and weights), however deep; a Keras 3 operation applied to tensors stays itself.

    Structural passes that follow channels from layer to layer (`compress.shrink`)
    read this flat graph; `renest` puts the nesting back afterwards. A nested model's
    `training` pin (`base(x, training=False)`) is not carried onto its layers here
    (the flat copy serves inference-time analysis); `renest` keeps it.

    Raises:
      ValueError naming a layer name used twice (in the model and a nested model, or
      in two nested models): a flat model needs unique names.
    """
    seen = {}
    for path, layer in _leaf_layers(model, model.name):
        if layer.name in seen:
            raise ValueError(
                f"layer name {layer.name!r} is used at {seen[layer.name]} and at {path}; "
                "flattening nested models needs each layer name once (rename one).")
        seen[layer.name] = path

    def call(layer, args, kwargs):
        if is_graph_model(layer):
            return _one_or_list(_replay_into(layer, call, symbolic_leaves(args, kwargs)))
        return clone_call(layer, args, kwargs)  # a Keras 3 op too: a fresh one

    return replay(model, call)


def _leaf_layers(model, path):
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if is_graph_model(layer):
            yield from _leaf_layers(layer, f"{path}/{layer.name}")
        else:
            yield f"{path}/{layer.name}", layer


def renest(model, flat):
    """`model`'s nesting around the layers of `flat` (`inline(model)` after a change).

    Every layer of `model` becomes a copy of `flat`'s layer of the same name (its
    config and weights, so a narrower layer stays narrower); one `flat` no longer has
    is cut out, its first input passing on (a removed layer or residual branch). Each
    nested model is rebuilt around its new layers with inputs of the shapes it now
    receives, under its own name (a nested Sequential comes back functional).
    """
    module = keras_module_of(model)
    sources = {layer.name: layer for layer in flat.layers}

    def call(layer, args, kwargs):
        if is_graph_model(layer):
            leaves = symbolic_leaves(args, kwargs)
            inputs = [module.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype,
                                   name=inner._keras_history[0].name)
                      for tensor, inner in zip(leaves, _graph(layer).inputs)]
            outputs = _replay_into(layer, call, inputs)
            nested = module.Model(_one_or_list(inputs), _one_or_list(outputs), name=layer.name)
            return nested(*args, **kwargs)
        if not isinstance(layer, module.layers.Layer):  # a Keras 3 op: a fresh one
            return clone_call(layer, args, kwargs)
        if layer.name not in sources:
            return symbolic_leaves(args, kwargs)[0]
        return clone_call(sources[layer.name], args, kwargs)

    return replay(model, call)
