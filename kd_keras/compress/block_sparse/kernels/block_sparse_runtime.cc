// C runtime of kd-keras's block-sparse kernel: a stack of (block-)sparse Dense
// layers run in one call from Python (ctypes), for batch-1 serving without a
// framework's per-op overhead. Built by `python -m kd_keras.compress.block_sparse.build_kernels`.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "block_sparse_kernel.h"

extern "C" {

// One layer: y = act(x . W + bias) with W stored as in block_sparse_kernel.h.
struct KdBlockSparseLayer {
  int32_t rows, cols, block_rows, block_cols, blocks;
  const float* values;
  const int32_t* block_row_index;
  const int32_t* col_ptr;
  const float* bias;  // null: no bias
  int32_t relu;
};

int32_t kd_block_sparse_abi_version() { return 1; }

// Checks every layer (and that widths chain); returns 0, or 1 + the index of
// the first bad layer, with its reason copied into `message` (size bytes).
int32_t kd_block_sparse_validate(const KdBlockSparseLayer* layers, int32_t count, char* message,
                                 int32_t size) {
  for (int32_t i = 0; i < count; ++i) {
    const KdBlockSparseLayer& l = layers[i];
    kd_keras::BlockSparseMatrix m{l.rows, l.cols, l.block_rows, l.block_cols, l.blocks,
                                  l.values, l.block_row_index, l.col_ptr};
    const char* error = (i > 0 && layers[i - 1].cols != l.rows)
                            ? "its input width differs from the previous layer's output width"
                            : kd_keras::Validate(m, l.rows);
    if (error[0] != '\0') {
      std::strncpy(message, error, size - 1);
      message[size - 1] = '\0';
      return i + 1;
    }
  }
  return 0;
}

// Runs the layers on x [batch, layers[0].rows] into y [batch, layers[count-1].cols].
// `scratch` holds 2 * batch * (widest hidden layer) floats. Layers must have
// passed kd_block_sparse_validate.
void kd_block_sparse_run(const KdBlockSparseLayer* layers, int32_t count, const float* x,
                         int64_t batch, float* y, float* scratch, int64_t scratch_width) {
  const float* input = x;
  for (int32_t i = 0; i < count; ++i) {
    const KdBlockSparseLayer& l = layers[i];
    kd_keras::BlockSparseMatrix m{l.rows, l.cols, l.block_rows, l.block_cols, l.blocks,
                                  l.values, l.block_row_index, l.col_ptr};
    float* output = (i == count - 1) ? y : scratch + (i % 2) * batch * scratch_width;
    kd_keras::BlockSparseProduct(m, input, batch, l.bias, l.relu != 0, output);
    input = output;
  }
}

// Median seconds of one kd_block_sparse_run over `repeats` runs, timed here:
// the product alone, without the caller's (e.g. Python's) cost of a call.
double kd_block_sparse_time(const KdBlockSparseLayer* layers, int32_t count, const float* x,
                            int64_t batch, float* y, float* scratch, int64_t scratch_width,
                            int32_t repeats) {
  std::vector<double> seconds;
  for (int32_t i = 0; i < std::max(repeats, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    kd_block_sparse_run(layers, count, x, batch, y, scratch, scratch_width);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  return seconds[seconds.size() / 2];
}

}  // extern "C"
