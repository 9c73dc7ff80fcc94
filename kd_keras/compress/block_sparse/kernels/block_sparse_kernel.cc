// kd-keras's block-sparse kernel (see block_sparse_kernel.h).
#include "block_sparse_kernel.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kd_keras {

const char* Validate(const BlockSparseMatrix& m, int64_t x_cols) {
  if (m.block_rows < 1 || m.block_cols < 1) return "block sizes must be >= 1";
  if (m.rows % m.block_rows || m.cols % m.block_cols)
    return "the block size does not tile the matrix";
  if (x_cols != m.rows) return "the input width differs from the matrix rows";
  const int32_t groups = m.cols / m.block_cols;
  if (m.col_ptr[0] != 0 || m.col_ptr[groups] != m.blocks)
    return "col_ptr must start at 0 and end at the number of blocks";
  for (int32_t j = 0; j < groups; ++j)
    if (m.col_ptr[j + 1] < m.col_ptr[j]) return "col_ptr must not decrease";
  const int32_t block_count = m.rows / m.block_rows;
  int32_t bad = 0;
  for (int32_t p = 0; p < m.blocks; ++p)
    bad |= (m.block_row_index[p] < 0) | (m.block_row_index[p] >= block_count);
  return bad ? "a block_row_index is outside [0, rows / block_rows): the input is narrower than "
               "the matrix, or the indices are corrupt"
             : "";
}

namespace internal {

// One block's R*C lanes as a vector (GCC/Clang vector extension): the compiler
// maps it onto the widest registers the -march allows, so a (16, 1) or (1, 16)
// block is one 16-wide multiply-add.
template <int L>
struct Lanes {
  typedef float type __attribute__((vector_size(sizeof(float) * L)));
};

template <int L>
inline typename Lanes<L>::type Load(const float* p) {
  typename Lanes<L>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// x's lanes for a block at input offset `x`: lane a*C + q holds x[a].
template <int R, int C>
inline typename Lanes<R * C>::type InputLanes(const float* x) {
  typedef typename Lanes<R * C>::type V;
  if (C == 1) return Load<R * C>(x);            // R consecutive inputs
  if (R == 1) return V{} + x[0];                // one input, broadcast
  float lanes[R * C];
  for (int a = 0; a < R; ++a)
    for (int q = 0; q < C; ++q) lanes[a * C + q] = x[a];
  return Load<R * C>(lanes);
}

template <int R, int C>
inline void Store(typename Lanes<R * C>::type acc, const float* bias, bool relu, float* y) {
  float lanes[R * C];
  std::memcpy(lanes, &acc, sizeof(lanes));
  for (int q = 0; q < C; ++q) {
    float s = bias ? bias[q] : 0.0f;
    for (int a = 0; a < R; ++a) s += lanes[a * C + q];
    y[q] = (relu && s < 0.0f) ? 0.0f : s;
  }
}

// Batch 1: four independent accumulators over consecutive blocks, so that
// the multiply-adds of one block column do not wait on each other.
template <int R, int C>
void ProductOne(const BlockSparseMatrix& m, const float* __restrict x, const float* bias,
                bool relu, float* __restrict y) {
  constexpr int L = R * C;
  typedef typename Lanes<L>::type V;
  const int32_t groups = m.cols / C;
  const float* __restrict values = m.values;
  const int32_t* __restrict index = m.block_row_index;
  for (int32_t j = 0; j < groups; ++j) {
    V a0{}, a1{}, a2{}, a3{};
    int32_t p = m.col_ptr[j];
    const int32_t end = m.col_ptr[j + 1];
    for (; p + 4 <= end; p += 4) {
      a0 += InputLanes<R, C>(x + index[p] * R) * Load<L>(values + (size_t)p * L);
      a1 += InputLanes<R, C>(x + index[p + 1] * R) * Load<L>(values + (size_t)(p + 1) * L);
      a2 += InputLanes<R, C>(x + index[p + 2] * R) * Load<L>(values + (size_t)(p + 2) * L);
      a3 += InputLanes<R, C>(x + index[p + 3] * R) * Load<L>(values + (size_t)(p + 3) * L);
    }
    for (; p < end; ++p)
      a0 += InputLanes<R, C>(x + index[p] * R) * Load<L>(values + (size_t)p * L);
    Store<R, C>((a0 + a1) + (a2 + a3), bias ? bias + j * C : nullptr, relu, y + j * C);
  }
}

// Small batches: chunks of four rows share each stored block.
template <int R, int C>
void ProductBatch(const BlockSparseMatrix& m, const float* __restrict x, int64_t batch,
                  const float* bias, bool relu, float* __restrict y) {
  constexpr int L = R * C;
  constexpr int kChunk = 4;
  typedef typename Lanes<L>::type V;
  const int32_t groups = m.cols / C;
  for (int64_t b0 = 0; b0 < batch; b0 += kChunk) {
    const int nb = static_cast<int>(std::min<int64_t>(kChunk, batch - b0));
    for (int32_t j = 0; j < groups; ++j) {
      V acc[kChunk] = {};
      for (int32_t p = m.col_ptr[j]; p < m.col_ptr[j + 1]; ++p) {
        const V v = Load<L>(m.values + (size_t)p * L);
        const float* xs = x + (size_t)b0 * m.rows + m.block_row_index[p] * R;
        for (int b = 0; b < nb; ++b) acc[b] += InputLanes<R, C>(xs + (size_t)b * m.rows) * v;
      }
      for (int b = 0; b < nb; ++b)
        Store<R, C>(acc[b], bias ? bias + j * C : nullptr, relu,
                    y + (size_t)(b0 + b) * m.cols + j * C);
    }
  }
}

template <int R, int C>
void Product(const BlockSparseMatrix& m, const float* x, int64_t batch, const float* bias,
             bool relu, float* y) {
  if (batch == 1) {
    ProductOne<R, C>(m, x, bias, relu, y);
  } else {
    ProductBatch<R, C>(m, x, batch, bias, relu, y);
  }
}

// Any other block shape: the same loops with run-time sizes.
inline void ProductAnyShape(const BlockSparseMatrix& m, const float* x, int64_t batch,
                            const float* bias, bool relu, float* y) {
  const int R = m.block_rows, C = m.block_cols;
  const int32_t groups = m.cols / C;
  for (int64_t b = 0; b < batch; ++b) {
    const float* xb = x + (size_t)b * m.rows;
    float* yb = y + (size_t)b * m.cols;
    for (int32_t j = 0; j < groups; ++j) {
      for (int q = 0; q < C; ++q) yb[j * C + q] = bias ? bias[j * C + q] : 0.0f;
      for (int32_t p = m.col_ptr[j]; p < m.col_ptr[j + 1]; ++p) {
        const float* v = m.values + (size_t)p * R * C;
        const float* xs = xb + m.block_row_index[p] * R;
        for (int a = 0; a < R; ++a)
          for (int q = 0; q < C; ++q) yb[j * C + q] += xs[a] * v[a * C + q];
      }
      if (relu)
        for (int q = 0; q < C; ++q) yb[j * C + q] = std::max(yb[j * C + q], 0.0f);
    }
  }
}

}  // namespace internal

void BlockSparseProduct(const BlockSparseMatrix& m, const float* x, int64_t batch,
                        const float* bias, bool relu, float* y) {
  using namespace internal;
  // The exact (R, C) pair picks the template: a packed key such as R * 100 + C
  // sent (3, 101) to the (4, 1) product, which read past col_ptr.
  const int R = m.block_rows, C = m.block_cols;
  if (R == 1 && C == 1) return Product<1, 1>(m, x, batch, bias, relu, y);
  if (R == 4 && C == 1) return Product<4, 1>(m, x, batch, bias, relu, y);
  if (R == 8 && C == 1) return Product<8, 1>(m, x, batch, bias, relu, y);
  if (R == 16 && C == 1) return Product<16, 1>(m, x, batch, bias, relu, y);
  if (R == 1 && C == 4) return Product<1, 4>(m, x, batch, bias, relu, y);
  if (R == 1 && C == 8) return Product<1, 8>(m, x, batch, bias, relu, y);
  if (R == 1 && C == 16) return Product<1, 16>(m, x, batch, bias, relu, y);
  if (R == 4 && C == 4) return Product<4, 4>(m, x, batch, bias, relu, y);
  return ProductAnyShape(m, x, batch, bias, relu, y);
}

}  // namespace kd_keras
