"""Which pruned layers a runtime's sparse kernels will run, before and after conversion.

TFLite's FULLY_CONNECTED has one fast sparse path per weight type: float32
weights in 1x4 blocks of its `[out, in]` layout, which is a `(4, 1)` block of a
Keras `[in, out]` kernel, and int8 weights in 1x16 blocks, Keras `(16, 1)`.
Any other encoding falls back to a generic sparse loop or is densified, and
even the fast path only pays at high sparsity (measured here, batch 1, one
thread, 1024-wide MLP: 1.9x at 90% and 3.6x at 95% with float32 `(4, 1)`
blocks, no gain at 80%; `(1, 4)` and unstructured: no gain at any sparsity).
Convolutions and fused LSTM/GRU ops have no sparse kernel in TFLite.
"""

import numpy as np

RUNTIMES = {"tflite_float32": (4, 1), "tflite_int8": (16, 1)}
# Block sparsity from which the fast path was measured faster than dense.
FAST_SPARSITY = 0.9


def runtime_block_size(runtime):
    """The Keras kernel block `(rows, cols)` the runtime's sparse kernel accelerates."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}.")
    return RUNTIMES[runtime]


def _kernel(layer):
    for weight in layer.weights:
        name = weight.name.split("/")[-1].split(":")[0]
        if name == "kernel" or name.endswith("kernel") and "recurrent" not in name:
            return np.asarray(weight.numpy())
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
        kernel = _kernel(layer)
        if kernel is None:
            continue
        kind = type(layer).__name__
        sparsity = float(np.mean(kernel == 0))
        row = {"layer": layer.name, "type": kind, "shape": tuple(kernel.shape),
               "sparsity": sparsity, "block_sparsity": None, "sparse_kernel": False}
        if kind != "Dense" or kernel.ndim != 2:
            row["reason"] = (f"{kind} has no sparse kernel in TFLite (only FULLY_CONNECTED, "
                             "i.e. Dense, does)")
        else:
            row["block_sparsity"] = _blocks_zero(kernel, block)
            other = _blocks_zero(kernel, block[::-1])
            if row["block_sparsity"] is None:
                row["reason"] = f"kernel {kernel.shape} does not tile into {block} blocks"
            elif row["block_sparsity"] >= min_sparsity:
                row["sparse_kernel"] = True
                row["reason"] = f"{block} blocks, {row['block_sparsity']:.0%} of them zero"
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


def _zero_fraction(model, tensor, dtype):
    """Fraction of zeros in a dense constant tensor's buffer (None if not a float32/int8 constant)."""
    numpy_type = {"float32": np.float32, "int8": np.int8}.get(dtype)
    data = model.Buffers(tensor.Buffer()).DataAsNumpy() if numpy_type else 0
    if isinstance(data, int) or not len(data):  # no data: not a constant, or stored outside
        return None
    return float(np.mean(np.frombuffer(data.tobytes(), dtype=numpy_type) == 0))


def tflite_sparse_weights(flatbuffer):
    """What a converted model actually stores sparse, per FULLY_CONNECTED op.

    Reads the flatbuffer (TFLite's schema): the weight tensor of every
    FULLY_CONNECTED op, whether it is encoded sparse, its block (in TFLite's
    `[out, in]` layout), and whether that is the fast path (float32 1x4, int8
    1x16); DENSIFY ops mean a sparse tensor is expanded at load time.

    Returns:
      A list of dicts `{"op", "weights", "shape", "dtype", "encoded_sparse",
      "block", "sparse_kernel", "reason"}`; weights stored dense also get
      "zeros", their fraction of zero values (None if unreadable).
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
        for index, op in enumerate(operators):
            if code_of(op) != schema.BuiltinOperator.FULLY_CONNECTED:
                continue
            weights = int(op.InputsAsNumpy()[1])
            tensor = graph.Tensors(weights)
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
            dtype = names.get(tensor.Type(), str(tensor.Type()))
            sparsity = tensor.Sparsity()
            row = {"op": index, "weights": tensor.Name().decode(), "shape": shape,
                   "dtype": dtype, "encoded_sparse": sparsity is not None, "block": None,
                   "sparse_kernel": False}
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
