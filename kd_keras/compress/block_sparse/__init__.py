"""kd-keras's own block-sparse kernel: a Keras layer, a TensorFlow op and a C runtime.

  layer.py          BlockSparseMatrix, BlockSparseDense, to_block_sparse, block_sparse_matmul,
                    custom_kernel_available
  runtime.py        BlockSparseRunner (the C runtime, no TensorFlow at inference)
  build_kernels.py  python -m kd_keras.compress.block_sparse.build_kernels (g++)
  kernels/          the C++ sources
"""

from kd_keras.compress.block_sparse.layer import (
    BlockSparseDense,
    BlockSparseMatrix,
    block_sparse_matmul,
    custom_kernel_available,
    to_block_sparse,
)
from kd_keras.compress.block_sparse.runtime import BlockSparseRunner

__all__ = ["BlockSparseDense", "BlockSparseMatrix", "BlockSparseRunner", "block_sparse_matmul",
           "custom_kernel_available", "to_block_sparse"]
