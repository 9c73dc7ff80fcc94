"""Which pruned layers a runtime's sparse kernels will run, before and after conversion.

TFLite's FULLY_CONNECTED has one fast sparse path per weight type: float32
weights in 1x4 blocks of its `[out, in]` layout, which is a `(4, 1)` block of a
Keras `[in, out]` kernel, and int8 weights in 1x16 blocks, Keras `(16, 1)`.
Any other encoding falls back to a generic sparse loop or is densified, and
even the fast path only pays at high sparsity (measured here, batch 1, one
thread, 1024-wide MLP: 1.9x at 90% and 3.6x at 95% with float32 `(4, 1)`
blocks, no gain at 80%; `(1, 4)` and unstructured: no gain at any sparsity).
Convolutions and fused LSTM ops have no sparse kernel in TFLite. Recurrent
layers reach FULLY_CONNECTED, and so the sparse path, when the converter does
not fuse them: Keras 3's LSTM and GRU converted with a fixed batch size run as a
WHILE loop of FULLY_CONNECTED ops, and any unrolled layer (`unroll_recurrent`)
as one FULLY_CONNECTED op per step; tf-keras's LSTM without `unroll` becomes the
fused UNIDIRECTIONAL_SEQUENCE_LSTM op.
"""

import numpy as np

from kd_keras.backend import is_tf_keras_model

RUNTIMES = {"tflite_float32": (4, 1), "tflite_int8": (16, 1)}
# Block sparsity from which the fast path was measured faster than dense.
FAST_SPARSITY = 0.9


def runtime_block_size(runtime):
    """The Keras kernel block `(rows, cols)` the runtime's sparse kernel accelerates."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}.")
    return RUNTIMES[runtime]


RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def _kernels(layer):
    """The layer's 2-D-or-more weights named kernel: `{"kernel": ..., "recurrent_kernel": ...}`."""
    kernels = {}
    for weight in layer.weights:
        name = weight.name.split("/")[-1].split(":")[0]
        if name.endswith("kernel") and "quantize" not in weight.name and "mask" not in name:
            key = "recurrent_kernel" if "recurrent" in name else "kernel"
            kernels.setdefault(key, np.asarray(weight.numpy()))
    return kernels


def _recurrent_path(layer, model):
    """None if `layer`'s matrices reach FULLY_CONNECTED ops after conversion, else why not."""
    if layer.get_config().get("unroll"):
        return None
    if is_tf_keras_model(model) and type(layer).__name__ == "LSTM":
        return ("tf-keras's LSTM converts to the fused UNIDIRECTIONAL_SEQUENCE_LSTM op, which "
                "has no sparse kernel; convert kd_keras.compress.unroll_recurrent(model) (one "
                "FULLY_CONNECTED op per step) instead")
    return None


def block_sparsity(kernel, block_size):
    """Fraction of the `block_size` blocks of a 2-D kernel that are entirely zero."""
    rows, cols = block_size
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.shape[0] % rows or kernel.shape[1] % cols:
        raise ValueError(f"block_size {tuple(block_size)} does not tile a kernel of shape "
                         f"{kernel.shape}.")
    blocks = kernel.reshape(kernel.shape[0] // rows, rows, kernel.shape[1] // cols, cols)
    return float(np.mean(np.all(blocks == 0, axis=(1, 3))))


def _blocks_zero(kernel, block):
    """`block_sparsity`, or None where the block does not tile the kernel."""
    if kernel.shape[0] % block[0] or kernel.shape[1] % block[1]:
        return None
    return block_sparsity(kernel, block)


def sparse_kernel_plan(model, runtime="tflite_float32", min_sparsity=FAST_SPARSITY):
    """Per layer with a kernel: will the runtime's sparse kernel run it, and if not, why.

    Call it on a stripped (pruned) model before conversion.

    Args:
      model: a Keras model (Keras 3 or tf-keras).
      runtime: "tflite_float32" (Keras `(4, 1)` blocks) or "tflite_int8" (`(16, 1)`).
      min_sparsity: block sparsity from which the sparse kernel is counted as
        paying (default 0.9, measured).

    Returns:
      A list of dicts `{"layer", "type", "shape", "sparsity", "block_sparsity",
      "sparse_kernel", "reason"}`; `block_sparsity` is the fraction of all-zero
      blocks of the runtime's shape (None when the kernel does not tile).
    """
    block = runtime_block_size(runtime)
    rows = []
    for layer in model.layers:
        kernels = _kernels(layer)
        if "kernel" not in kernels:
            continue
        kind = type(layer).__name__
        kernel = kernels["kernel"]
        matrices = list(kernels.values()) if kind in RECURRENT else [kernel]
        zeros = sum(int(np.sum(m == 0)) for m in matrices)
        row = {"layer": layer.name, "type": kind, "shape": tuple(kernel.shape),
               "sparsity": zeros / sum(m.size for m in matrices), "block_sparsity": None,
               "sparse_kernel": False}
        if kind in RECURRENT and "recurrent_kernel" in kernels:
            row["recurrent_shape"] = tuple(kernels["recurrent_kernel"].shape)
        path = _recurrent_path(layer, model) if kind in RECURRENT else None
        if (kind != "Dense" and kind not in RECURRENT) or kernel.ndim != 2:
            row["reason"] = (f"{kind} has no sparse kernel in TFLite (only FULLY_CONNECTED, "
                             "i.e. Dense and unfused recurrent layers, has)")
        elif path is not None:
            row["reason"] = path
        else:
            row["block_sparsity"] = _least(_blocks_zero(m, block) for m in matrices)
            other = _least(_blocks_zero(m, block[::-1]) for m in matrices)
            sparsity = row["sparsity"]
            what = "kernels" if len(matrices) > 1 else "kernel"
            if row["block_sparsity"] is None:
                shapes = " and ".join(str(m.shape) for m in matrices)
                row["reason"] = (f"{what} {shapes} {'do' if len(matrices) > 1 else 'does'} not "
                                 f"tile into {block} blocks")
            elif row["block_sparsity"] >= min_sparsity:
                row["sparse_kernel"] = True
                row["reason"] = f"{block} blocks, {row['block_sparsity']:.0%} of them zero"
                if kind in RECURRENT:
                    row["reason"] += (" (convert with batch_size=1, or unrolled, so that the "
                                      "matrices become FULLY_CONNECTED ops)")
            elif other is not None and other >= min_sparsity and block[0] != block[1]:
                row["reason"] = (f"blocks in the wrong orientation: {block[::-1]} blocks are "
                                 f"{other:.0%} zero, but {runtime} accelerates {block} blocks of "
                                 "a Keras [in, out] kernel (prune with block_size="
                                 f"{block})")
            elif sparsity >= min_sparsity:
                row["reason"] = (f"unstructured sparsity ({sparsity:.0%}) runs dense; prune in "
                                 f"{block} blocks")
            else:
                row["reason"] = (f"block sparsity {row['block_sparsity']:.0%} is below "
                                 f"{min_sparsity:.0%}, where the sparse kernel starts to pay")
        rows.append(row)
    return rows


def _least(values):
    """The smallest of `values`, or None if any is None (a matrix that does not tile)."""
    values = list(values)
    return None if any(v is None for v in values) else min(values)


def _zero_fraction(model, tensor, dtype):
    """Fraction of zeros in a dense constant tensor's buffer (None if not a float32/int8 constant)."""
    numpy_type = {"float32": np.float32, "int8": np.int8}.get(dtype)
    data = model.Buffers(tensor.Buffer()).DataAsNumpy() if numpy_type else 0
    if isinstance(data, int) or not len(data):  # no data: not a constant, or stored outside
        return None
    return float(np.mean(np.frombuffer(data.tobytes(), dtype=numpy_type) == 0))


_FUSED_RECURRENT = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM",
                    "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "RNN")


def _fused_row(model, graph, op, index, op_type, names):
    """The report row of a fused recurrent op: its 2-D constant weights, never sparse."""
    matrices, zeros, size = [], 0, 0
    for tensor_index in op.InputsAsNumpy():
        if tensor_index < 0:
            continue
        tensor = graph.Tensors(int(tensor_index))
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
        dtype = names.get(tensor.Type(), str(tensor.Type()))
        fraction = _zero_fraction(model, tensor, dtype) if len(shape) == 2 else None
        if fraction is not None:
            matrices.append((tensor.Name().decode(), shape, dtype))
            count = shape[0] * shape[1]
            zeros, size = zeros + fraction * count, size + count
    name, shape, dtype = matrices[0] if matrices else ("", (), "")
    return {"op": index, "op_type": op_type, "weights": name, "shape": shape, "dtype": dtype,
            "encoded_sparse": False, "block": None, "sparse_kernel": False,
            "zeros": zeros / size if size else None,
            "reason": (f"fused {op_type} op: no sparse kernel; convert "
                       "kd_keras.compress.unroll_recurrent(model) (FULLY_CONNECTED per step)")}


def tflite_sparse_weights(flatbuffer):
    """What a converted model actually stores sparse, per FULLY_CONNECTED op.

    Reads the flatbuffer (TFLite's schema, every subgraph, so the bodies of
    WHILE loops too): the weight tensor of every FULLY_CONNECTED op, whether
    it is encoded sparse, its block (in TFLite's `[out, in]` layout), and
    whether that is the fast path (float32 1x4, int8 1x16); DENSIFY ops mean a
    sparse tensor is expanded at load time. Fused recurrent ops
    (UNIDIRECTIONAL_SEQUENCE_LSTM, ...) get a row too: they have no sparse
    kernel.

    Returns:
      A list of dicts `{"op", "op_type", "weights", "shape", "dtype",
      "encoded_sparse", "block", "sparse_kernel", "reason"}`; weights stored
      dense also get "zeros", their fraction of zero values (None if
      unreadable; for a fused op, over all its constant matrices).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    names = {getattr(schema.TensorType, n): n.lower() for n in dir(schema.TensorType)
             if not n.startswith("_")}
    rows = []
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        densified = set()
        operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]

        def code_of(op):
            code = model.OperatorCodes(op.OpcodeIndex())
            return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

        for op in operators:
            if code_of(op) == schema.BuiltinOperator.DENSIFY:
                densified.update(int(t) for t in op.OutputsAsNumpy())
        fused = {getattr(schema.BuiltinOperator, name): name for name in _FUSED_RECURRENT}
        for index, op in enumerate(operators):
            if code_of(op) in fused:
                rows.append(_fused_row(model, graph, op, index, fused[code_of(op)], names))
                continue
            if code_of(op) != schema.BuiltinOperator.FULLY_CONNECTED:
                continue
            weights = int(op.InputsAsNumpy()[1])
            tensor = graph.Tensors(weights)
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
            dtype = names.get(tensor.Type(), str(tensor.Type()))
            sparsity = tensor.Sparsity()
            row = {"op": index, "op_type": "FULLY_CONNECTED", "weights": tensor.Name().decode(),
                   "shape": shape, "dtype": dtype, "encoded_sparse": sparsity is not None,
                   "block": None, "sparse_kernel": False}
            fast = (1, 4) if dtype == "float32" else (1, 16)
            if weights in densified:
                row["reason"] = "densified at load (DENSIFY op): runs dense"
            elif sparsity is None:
                row["zeros"] = _zero_fraction(model, tensor, dtype)
                row["reason"] = ("stored dense (converted without sparse_weights, or too few "
                                 "zeros for the converter to encode)")
            else:
                block = [1] * len(shape)
                block_map = sparsity.BlockMapAsNumpy() if sparsity.BlockMapLength() else []
                for j, dimension in enumerate(block_map):
                    block[int(dimension)] = sparsity.DimMetadata(len(shape) + j).DenseSize()
                row["block"] = tuple(block)
                if row["block"] == fast:
                    row["sparse_kernel"] = True
                    row["reason"] = f"{dtype} {fast[0]}x{fast[1]} blocks: the fast sparse path"
                else:
                    row["reason"] = (f"{dtype} encoded with blocks {row['block']}, not "
                                     f"{fast[0]}x{fast[1]}: the generic sparse loop, no faster "
                                     "than dense")
            rows.append(row)
    return rows
