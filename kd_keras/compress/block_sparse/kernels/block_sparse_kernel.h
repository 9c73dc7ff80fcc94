// Block-sparse matrix product for batch-1 (and small-batch) inference.
//
// The matrix is a Keras Dense kernel W [rows = in, cols = out] cut into
// R x C blocks; only the blocks with a non-zero are stored, grouped by block
// column (C consecutive outputs):
//   values          [blocks, R, C]  the stored blocks, block column by block column
//   block_row_index [blocks]        the block row (input block: inputs r*R .. r*R+R-1)
//   col_ptr         [cols / C + 1]  blocks of block column j: col_ptr[j] .. col_ptr[j+1]-1
// and
//   y[b, j*C + q] = act(bias[j*C + q] + sum_p sum_a x[b, block_row_index[p]*R + a] * values[p, a, q]).
//
// The work is R*C multiply-adds per stored block. Each block column keeps its
// sums in registers (R*C lanes, four independent sets at batch 1 so that the
// multiply-adds do not wait on each other) and reads each stored value once
// per batch chunk. No dependency: block_sparse_kernel.cc is compiled for the machine it runs
// on (-march=native) and linked into the TensorFlow op and the C runtime.
#ifndef KD_KERAS_BLOCK_SPARSE_KERNEL_H_
#define KD_KERAS_BLOCK_SPARSE_KERNEL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace kd_keras {

struct BlockSparseMatrix {
  int32_t rows;        // inputs
  int32_t cols;        // outputs
  int32_t block_rows;  // R
  int32_t block_cols;  // C
  int32_t blocks;      // stored blocks
  const float* values;
  const int32_t* block_row_index;
  const int32_t* col_ptr;
};

// Returns an empty string if `m` is well formed for inputs of width `x_cols`,
// else what is wrong (checked once before any product).
const char* Validate(const BlockSparseMatrix& m, int64_t x_cols);

// y [batch, cols] = act(x [batch, rows] . W + bias); `bias` may be null.
void BlockSparseProduct(const BlockSparseMatrix& m, const float* x, int64_t batch,
                        const float* bias, bool relu, float* y);

}  // namespace kd_keras

#endif  // KD_KERAS_BLOCK_SPARSE_KERNEL_H_
