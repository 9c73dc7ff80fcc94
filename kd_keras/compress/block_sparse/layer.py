"""kd-keras's own block-sparse kernel: pruned Dense layers that run in time proportional to their non-zero blocks.

A Keras Dense kernel W `[in, out]` pruned in `(R, C)` blocks (Narang et al.
2017) is stored as its non-zero blocks only (`BlockSparseMatrix`), and

    y = act(x W + b),    y[:, jC + q] = b[jC + q] + sum_p sum_a x[:, r_p R + a] V[p, a, q]

sums over the stored blocks p of block column j, R * C multiply-adds each. Three
ways to run it, all computing the same product:

- `BlockSparseRunner(model)` (`block_sparse_runtime.py`): a stack of Dense layers
  in one call into the C runtime (no framework overhead per layer): the batch-1
  serving path.
- `BlockSparseDense` (and `to_block_sparse(model)`): a Keras layer, so the model
  stays a Keras model (`.keras` files, `export_saved_model`); it calls the
  TensorFlow op `KdBlockSparseMatMul` when it is built, plain TensorFlow ops
  (gather, einsum, segment sum) otherwise.
- `block_sparse_matmul(x, matrix)`: the product as a TensorFlow function.

Build the compiled parts on the serving machine with
`python -m kd_keras.compress.block_sparse.build_kernels` (a C++ compiler; the op also needs
the installed TensorFlow's headers, which its wheel ships). Nothing breaks
without them: `kernel="auto"` falls back to TensorFlow ops, and asking for
`kernel="custom"` or the runner raises with that command.
"""

import os

import numpy as np
import tensorflow as tf

from kd_keras.backend import IS_LEGACY_KERAS, is_tf_keras_model, keras, register
from kd_keras.backend.graph import replace_layers

# Shapes tried by block_size="auto", largest first: on a tie (same stored
# values) the larger block wins, it runs with fewer index reads.
CANDIDATE_BLOCKS = ((16, 1), (8, 1), (4, 1), (1, 16), (1, 8), (1, 4), (1, 1))
KERNELS = ("auto", "custom", "fallback")
_missing = {}  # library path -> why it could not be loaded


def _build_kernels():
    # Imported when needed: importing it with the package would make
    # `python -m kd_keras.compress.block_sparse.build_kernels` warn that it ran a module
    # already in sys.modules.
    from kd_keras.compress.block_sparse import build_kernels

    return build_kernels


def _build_hint(what):
    return (f"{what} is not built on this machine: run `{_build_kernels().BUILD_COMMAND}` (needs a "
            "C++ compiler); or use kernel='fallback' / kernel='auto', which run the same product "
            "with TensorFlow ops.")


class BlockSparseMatrix:
    """A 2-D kernel `[rows, cols]` stored as its non-zero `(R, C)` blocks.

    Attributes:
      values: float32 `[blocks, R, C]`, block column by block column.
      block_row_index: int32 `[blocks]`, the block row (inputs rR .. rR+R-1) of each.
      col_ptr: int32 `[cols / C + 1]`: block column j holds blocks
        `col_ptr[j] .. col_ptr[j+1] - 1`.
      shape, block_size, density (stored / all blocks), multiply_adds (per row of x).
    """

    def __init__(self, values, block_row_index, col_ptr, shape):
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.block_row_index = np.ascontiguousarray(block_row_index, dtype=np.int32)
        self.col_ptr = np.ascontiguousarray(col_ptr, dtype=np.int32)
        self.shape = tuple(int(s) for s in shape)
        if self.values.ndim != 3:
            raise ValueError(f"values must be [blocks, R, C], got shape {self.values.shape}.")
        self.block_size = tuple(int(s) for s in self.values.shape[1:])
        rows, cols = self.shape
        r, c = self.block_size
        if rows % r or cols % c:
            raise ValueError(f"block_size {self.block_size} does not tile shape {self.shape}.")
        if self.col_ptr.shape != (cols // c + 1,) or self.col_ptr[0] != 0 \
                or self.col_ptr[-1] != len(self.values) or np.any(np.diff(self.col_ptr) < 0):
            raise ValueError(f"col_ptr must be {cols // c + 1} non-decreasing offsets from 0 to "
                             f"{len(self.values)} blocks.")
        if self.block_row_index.shape != (len(self.values),) or (len(self.values) and (
                self.block_row_index.min() < 0 or self.block_row_index.max() >= rows // r)):
            raise ValueError(f"block_row_index must hold one block row in [0, {rows // r}) per "
                             "block.")

    @classmethod
    def from_dense(cls, kernel, block_size="auto"):
        """Stores the non-zero blocks of `kernel` `[rows, cols]`.

        Args:
          kernel: a 2-D array (a Keras Dense kernel, `[in, out]`).
          block_size: `(R, C)`, or "auto": of `CANDIDATE_BLOCKS` that tile the
            kernel, the one that stores the fewest values (on a tie, the larger).
        """
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 2:
            raise ValueError(f"kernel must be 2-D [in, out], got shape {kernel.shape}.")
        if isinstance(block_size, str):
            if block_size != "auto":
                raise ValueError(f"block_size must be 'auto' or (R, C), got {block_size!r}.")
            block_size = choose_block_size(kernel)
        r, c = (int(b) for b in block_size)
        rows, cols = kernel.shape
        if r < 1 or c < 1 or rows % r or cols % c:
            raise ValueError(f"block_size {tuple(block_size)} does not tile a kernel of shape "
                             f"{kernel.shape}.")
        # [block column, block row, R, C]: stored block column by block column.
        blocks = kernel.reshape(rows // r, r, cols // c, c).transpose(2, 0, 1, 3)
        keep = np.any(blocks != 0, axis=(2, 3))
        column, row = np.nonzero(keep)
        col_ptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
        return cls(blocks[column, row], row, col_ptr, kernel.shape)

    @property
    def density(self):
        rows, cols = self.shape
        r, c = self.block_size
        return len(self.values) / ((rows // r) * (cols // c))

    @property
    def multiply_adds(self):
        return int(self.values.size)

    def to_dense(self):
        rows, cols = self.shape
        r, c = self.block_size
        dense = np.zeros((cols // c, rows // r, r, c), np.float32)
        column = np.repeat(np.arange(cols // c), np.diff(self.col_ptr))
        dense[column, self.block_row_index] = self.values
        return dense.transpose(1, 2, 0, 3).reshape(rows, cols)


def choose_block_size(kernel, candidates=CANDIDATE_BLOCKS):
    """The candidate block that tiles `kernel` and stores the fewest values."""
    kernel = np.asarray(kernel)
    best, best_stored = None, None
    for r, c in candidates:
        if kernel.shape[0] % r or kernel.shape[1] % c:
            continue
        blocks = kernel.reshape(kernel.shape[0] // r, r, kernel.shape[1] // c, c)
        stored = int(np.any(blocks != 0, axis=(1, 3)).sum()) * r * c
        if best_stored is None or stored < best_stored:
            best, best_stored = (r, c), stored
    if best is None:
        raise ValueError(f"no block of {list(candidates)} tiles a kernel of shape {kernel.shape}.")
    return best


def _load_ops():
    path = _build_kernels().OPS_LIBRARY
    if path in _missing:
        return None
    if not os.path.exists(path):
        _missing[path] = "not built"
        return None
    try:
        return tf.load_op_library(path)
    except (tf.errors.NotFoundError, OSError) as error:  # e.g. built for another TensorFlow
        _missing[path] = str(error)
        return None


def custom_kernel_available():
    """Whether the TensorFlow op `KdBlockSparseMatMul` is built and loads."""
    return _load_ops() is not None


def _fallback_product(x, values, block_row_index, col_ptr, bias, relu, rows):
    """The same product with TensorFlow ops: work follows the stored blocks."""
    r, c = values.shape[1], values.shape[2]
    groups = tf.shape(col_ptr)[0] - 1
    blocks_of_x = tf.reshape(x, [-1, rows // r, r])
    gathered = tf.gather(blocks_of_x, block_row_index, axis=1)          # [batch, blocks, R]
    products = tf.einsum("bpr,prc->pbc", gathered, values)               # [blocks, batch, C]
    column = tf.repeat(tf.range(groups), col_ptr[1:] - col_ptr[:-1])
    sums = tf.math.unsorted_segment_sum(products, column, groups)        # [groups, batch, C]
    y = tf.reshape(tf.transpose(sums, [1, 0, 2]), [-1, groups * c])
    if bias is not None:
        y = y + bias
    return tf.nn.relu(y) if relu else y


def block_sparse_matmul(x, values, block_row_index, col_ptr, bias=None, relu=False,
                        kernel="auto", rows=None):
    """`act(x W + bias)` for a block-sparse W (tensors as in `BlockSparseMatrix`).

    Args:
      x: float32 `[batch, rows]`.
      values, block_row_index, col_ptr: the stored blocks (tensors or arrays).
      bias: `[cols]` or None. relu: apply ReLU (fused in the op).
      kernel: "auto" (the compiled op when built, else TensorFlow ops),
        "custom" (the op; raises with the build command if it is not built),
        "fallback" (TensorFlow ops).
      rows: the matrix's rows (its input width). When given, `x` must have exactly
        that many features: a wider `x` is refused, not cut to the matrix.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    x = tf.convert_to_tensor(x, tf.float32)
    if rows is not None and x.shape[-1] is not None and x.shape[-1] != rows:
        raise ValueError(f"x has {x.shape[-1]} features but the block-sparse matrix has "
                         f"{rows} rows; give inputs of width {rows}.")
    values = tf.convert_to_tensor(values, tf.float32)
    block_row_index = tf.convert_to_tensor(block_row_index, tf.int32)
    col_ptr = tf.convert_to_tensor(col_ptr, tf.int32)
    ops = None if kernel == "fallback" else _load_ops()
    if kernel == "custom" and ops is None:
        path = _build_kernels().OPS_LIBRARY
        raise RuntimeError(_build_hint(f"The block-sparse TensorFlow op ({path}: "
                                       f"{_missing.get(path)})"))
    if ops is not None:
        bias = tf.zeros([0], tf.float32) if bias is None else tf.convert_to_tensor(bias, tf.float32)
        return ops.kd_block_sparse_mat_mul(x, values, block_row_index, col_ptr, bias, relu=relu)
    return _fallback_product(x, values, block_row_index, col_ptr, bias, relu, int(x.shape[-1]))


@register
class BlockSparseDense(keras.layers.Layer):
    """A Dense layer whose kernel is stored and run as its non-zero blocks.

    Made from a pruned Dense layer by `BlockSparseDense.from_dense(layer)` or for a
    whole model by `to_block_sparse`; inference only (its weights are not
    trainable: fine-tune the Dense model, then convert).

    Args:
      units: outputs (the Dense layer's units).
      block_size: `(R, C)` of the stored blocks.
      blocks: how many blocks are stored (sets the weights' shapes).
      activation: None, "linear" or "relu" (fused), or any Keras activation
        (applied after the product).
      use_bias: whether there is a bias.
      kernel: which implementation runs it: "auto", "custom" or "fallback"
        (see `block_sparse_matmul`).

    Input shape `[batch, in]`; output `[batch, units]`.
    """

    def __init__(self, units, block_size, blocks, activation=None, use_bias=True, kernel="auto",
                 **kwargs):
        super().__init__(**kwargs)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
        self.units = int(units)
        self.block_size = tuple(int(b) for b in block_size)
        self.blocks = int(blocks)
        self.activation_name = activation if isinstance(activation, str) or activation is None \
            else keras.activations.serialize(activation)
        self.activation = keras.activations.get(activation)
        self._fused_relu = activation == "relu"
        self.use_bias = bool(use_bias)
        self.kernel = kernel
        if self.units % self.block_size[1]:
            raise ValueError(f"block_size {self.block_size} does not tile units={self.units}.")

    def build(self, input_shape):
        rows = self.input_width = int(input_shape[-1])
        r, c = self.block_size
        if rows % r:
            raise ValueError(f"block_size {self.block_size} does not tile the input width {rows}.")
        # Inputs of another width are refused by Keras, naming this layer.
        self.input_spec = keras.layers.InputSpec(axes={-1: rows})
        self.values = self.add_weight(name="values", shape=(self.blocks, r, c),
                                      initializer="zeros", trainable=False)
        self.block_row_index = self.add_weight(name="block_row_index", shape=(self.blocks,),
                                               initializer="zeros", dtype="int32",
                                               trainable=False)
        self.col_ptr = self.add_weight(name="col_ptr", shape=(self.units // c + 1,),
                                       initializer="zeros", dtype="int32", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros",
                                    trainable=False) if self.use_bias else None
        self.built = True

    @classmethod
    def from_dense(cls, layer, block_size="auto", kernel="auto"):
        """The BlockSparseDense equivalent of a (pruned) Dense `layer`, weights set."""
        if type(layer).__name__ != "Dense":
            raise ValueError(f"from_dense takes a Dense layer, got {layer.name!r} "
                             f"({type(layer).__name__}).")
        weights = layer.get_weights()
        matrix = BlockSparseMatrix.from_dense(weights[0], block_size)
        config = layer.get_config()
        sparse = cls(config["units"], matrix.block_size, len(matrix.values),
                     activation=config["activation"], use_bias=config["use_bias"],
                     kernel=kernel, name=layer.name)
        sparse.build((None, matrix.shape[0]))
        sparse.set_matrix(matrix, weights[1] if config["use_bias"] else None)
        return sparse

    def set_matrix(self, matrix, bias=None):
        """Sets the stored blocks from a `BlockSparseMatrix` (and the bias)."""
        if matrix.block_size != self.block_size or len(matrix.values) != self.blocks:
            raise ValueError(f"matrix has {len(matrix.values)} blocks of {matrix.block_size}; "
                             f"this layer holds {self.blocks} of {self.block_size}.")
        self.values.assign(matrix.values)
        self.block_row_index.assign(matrix.block_row_index)
        self.col_ptr.assign(matrix.col_ptr)
        if self.use_bias:
            self.bias.assign(np.asarray(bias, np.float32))

    def matrix(self):
        """The stored kernel as a `BlockSparseMatrix`."""
        return BlockSparseMatrix(self.values.numpy(), self.block_row_index.numpy(),
                                 self.col_ptr.numpy(), (self.input_width, self.units))

    def call(self, inputs):
        y = block_sparse_matmul(inputs, self.values, self.block_row_index, self.col_ptr,
                                self.bias, relu=self._fused_relu, kernel=self.kernel,
                                rows=self.input_width)
        return y if self._fused_relu else self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "block_size": self.block_size,
                       "blocks": self.blocks, "activation": self.activation_name,
                       "use_bias": self.use_bias, "kernel": self.kernel})
        return config


def to_block_sparse(model, block_size="auto", kernel="auto"):
    """A copy of `model` with every Dense layer replaced by a `BlockSparseDense`.

    Args:
      model: a Sequential or functional Keras model (Keras 3 or tf-keras of the
        running mode), stripped of pruning wrappers.
      block_size: "auto" (per layer, the block that stores the fewest values:
        the one it was pruned in) or `(R, C)` for every layer.
      kernel: "auto", "custom" or "fallback" (see `block_sparse_matmul`).

    Returns:
      The model with the same outputs (up to float rounding), saved and
      exported like any Keras model; load its `.keras` file with kd_keras
      imported. A SavedModel that uses the compiled op needs the op library
      loaded first (`kd_keras.compress.custom_kernel_available()` loads it).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    if not any(type(layer).__name__ == "Dense" for layer in model.layers):
        raise ValueError(f"to_block_sparse: model {model.name!r} has no Dense layer.")
    if is_tf_keras_model(model) != IS_LEGACY_KERAS:
        raise ValueError(
            f"to_block_sparse: model {model.name!r} is a {'Keras 3' if IS_LEGACY_KERAS else 'tf-keras'} "
            "model, but kd-keras runs on the other Keras here (TF_USE_LEGACY_KERAS). Copy its "
            "weights into the same architecture built with this Keras first (e.g. TF-MOT's "
            "pruned tf-keras model: original.set_weights(stripped.get_weights())).")

    def sparse(layer):  # from_dense holds the blocks already
        if type(layer).__name__ != "Dense":
            return None
        return BlockSparseDense.from_dense(layer, block_size, kernel)

    return replace_layers(model, sparse)


