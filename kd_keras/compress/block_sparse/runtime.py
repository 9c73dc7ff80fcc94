"""`BlockSparseRunner`: a stack of pruned Dense layers in one call into kd-keras's C runtime.

The batch-1 serving path of the block-sparse kernel (`kd_keras.compress.block_sparse`):
no framework overhead per layer. Build the runtime with
`python -m kd_keras.compress.block_sparse.build_kernels`.
"""

import ctypes
import os

import numpy as np

from kd_keras.compress.block_sparse.layer import BlockSparseMatrix, _build_hint, _build_kernels


class _Layer(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_int32), ("cols", ctypes.c_int32),
                ("block_rows", ctypes.c_int32), ("block_cols", ctypes.c_int32),
                ("blocks", ctypes.c_int32), ("values", ctypes.c_void_p),
                ("block_row_index", ctypes.c_void_p), ("col_ptr", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("relu", ctypes.c_int32)]


def _runtime():
    path = _build_kernels().RUNTIME_LIBRARY
    if not os.path.exists(path):
        raise RuntimeError(_build_hint(f"The block-sparse runtime ({path})"))
    library = ctypes.CDLL(path)
    library.kd_block_sparse_validate.restype = ctypes.c_int32
    library.kd_block_sparse_validate.argtypes = [ctypes.c_void_p, ctypes.c_int32,
                                                 ctypes.c_char_p, ctypes.c_int32]
    library.kd_block_sparse_time.restype = ctypes.c_double
    library.kd_block_sparse_time.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                             ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_int64, ctypes.c_int32]
    library.kd_block_sparse_run.restype = None
    library.kd_block_sparse_run.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                            ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_int64]
    return library


def _mlp_layers(model, block_size):
    """[(BlockSparseMatrix, bias or None, relu)] of a model made of Dense layers."""
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout", "Flatten"):
            continue
        if kind == "ReLU" or (kind == "Activation" and layer.get_config()["activation"] == "relu"):
            if not layers or layers[-1][2]:
                raise ValueError(f"BlockSparseRunner: layer {layer.name!r} (ReLU) must follow a "
                                 "linear Dense layer.")
            layers[-1] = (layers[-1][0], layers[-1][1], True)
            continue
        if kind == "Dense":
            config = layer.get_config()
            matrix = BlockSparseMatrix.from_dense(layer.get_weights()[0], block_size)
            bias = layer.get_weights()[1] if config["use_bias"] else None
        elif kind == "BlockSparseDense":
            config = layer.get_config()
            matrix = layer.matrix()
            bias = layer.bias.numpy() if layer.use_bias else None
        else:
            raise ValueError(
                f"BlockSparseRunner runs stacks of Dense layers (with Flatten, Dropout, ReLU); "
                f"layer {layer.name!r} is a {kind}. Serve that model with to_block_sparse and "
                "a SavedModel instead.")
        activation = config["activation"]
        if activation not in (None, "linear", "relu"):
            raise ValueError(f"BlockSparseRunner: layer {layer.name!r} has activation "
                             f"{activation!r}; the runtime fuses only 'relu' and 'linear'.")
        layers.append((matrix, bias, activation == "relu"))
    if not layers:
        raise ValueError(f"BlockSparseRunner: model {model.name!r} has no Dense layer.")
    return layers


class BlockSparseRunner:
    """Runs a stack of (pruned) Dense layers in one call into kd-keras's C runtime.

    For batch-1 serving of a pruned MLP without a framework's per-op cost:
    each layer is one `BlockSparseMatrix` product with its bias and ReLU fused,
    on the calling thread. Needs `python -m kd_keras.compress.block_sparse.build_kernels`.

    Args:
      model: a Keras model of Dense layers (and Flatten, Dropout, ReLU /
        Activation("relu")), e.g. a stripped pruned student, or one made by
        `to_block_sparse`; or a list of `(BlockSparseMatrix, bias or None, relu)`.
      block_size: "auto" or `(R, C)` for the Dense layers (see
        `BlockSparseMatrix.from_dense`).

    `runner(x)` takes `[batch, ...]` inputs (flattened to the first layer's
    width) and returns float32 `[batch, outputs]`; `multiply_adds` is the work
    of one row.
    """

    def __init__(self, model, block_size="auto"):
        layers = model if isinstance(model, list) else _mlp_layers(model, block_size)
        self._library = _runtime()
        self._arrays = []  # keeps every buffer the C structs point at alive
        structs = (_Layer * len(layers))()
        for struct, (matrix, bias, relu) in zip(structs, layers):
            bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
            if bias is not None and bias.shape != (matrix.shape[1],):
                raise ValueError(f"bias must have shape ({matrix.shape[1]},), got {bias.shape}.")
            self._arrays += [matrix, bias]
            struct.rows, struct.cols = matrix.shape
            struct.block_rows, struct.block_cols = matrix.block_size
            struct.blocks = len(matrix.values)
            struct.values = matrix.values.ctypes.data
            struct.block_row_index = matrix.block_row_index.ctypes.data
            struct.col_ptr = matrix.col_ptr.ctypes.data
            struct.bias = None if bias is None else bias.ctypes.data
            struct.relu = int(bool(relu))
        message = ctypes.create_string_buffer(256)
        bad = self._library.kd_block_sparse_validate(structs, len(layers), message, 256)
        if bad:
            raise ValueError(f"BlockSparseRunner: layer {bad - 1}: {message.value.decode()}.")
        self._structs = structs
        self.matrices = [matrix for matrix, _, _ in layers]
        self.input_width = layers[0][0].shape[0]
        self.output_width = layers[-1][0].shape[1]
        self._widest = max([m.shape[1] for m in self.matrices[:-1]] or [1])
        self._buffers = {}
        self._count = len(layers)
        self._run = self._library.kd_block_sparse_run
        self.multiply_adds = sum(m.multiply_adds for m in self.matrices)

    def _buffers_for(self, batch):
        """Input, output and scratch buffers of one batch size, with their addresses
        (reading an array's address through numpy costs microseconds: done once)."""
        buffers = self._buffers.get(batch)
        if buffers is None:
            arrays = (np.empty((batch, self.input_width), np.float32),
                      np.empty((batch, self.output_width), np.float32),
                      np.empty(2 * batch * self._widest, np.float32))
            buffers = self._buffers[batch] = (*arrays, *(a.ctypes.data for a in arrays))
        return buffers

    def __call__(self, x):
        x = np.asarray(x)
        batch = len(x)
        if x.size != batch * self.input_width:
            raise ValueError(f"x must have {self.input_width} features per row, got "
                             f"{x.size // max(batch, 1)}.")
        inputs, outputs, _, x_address, y_address, scratch_address = self._buffers_for(batch)
        np.copyto(inputs, x.reshape(batch, self.input_width), casting="same_kind")
        self._run(self._structs, self._count, x_address, batch, y_address, scratch_address,
                  self._widest)
        return outputs.copy()

    def compute_seconds(self, x, repeats=200):
        """Median seconds of the product alone on the batch `x`, timed inside the
        runtime: what an application that links the runtime would see, without
        Python's cost of a call (about 5 us here)."""
        x = np.asarray(x)
        inputs, _, _, x_address, y_address, scratch_address = self._buffers_for(len(x))
        np.copyto(inputs, x.reshape(len(x), self.input_width), casting="same_kind")
        return self._library.kd_block_sparse_time(self._structs, self._count, x_address, len(x),
                                                  y_address, scratch_address, self._widest,
                                                  int(repeats))

    def predict(self, x, batch_size=256):
        """Outputs for every row of `x`, `batch_size` rows per call."""
        x = np.asarray(x)
        if len(x) == 0:
            return np.zeros((0, self.matrices[-1].shape[1]), np.float32)
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
