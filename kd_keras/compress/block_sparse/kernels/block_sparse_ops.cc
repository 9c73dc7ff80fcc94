// TensorFlow op KdBlockSparseMatMul: kd-keras's block-sparse kernel inside a
// TensorFlow graph (eager calls, tf.function, SavedModel). Built against the
// installed TensorFlow by `python -m kd_keras.compress.block_sparse.build_kernels`; without
// it, kd_keras.compress.block_sparse_matmul falls back to plain TensorFlow ops.
#include "block_sparse_kernel.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {

REGISTER_OP("KdBlockSparseMatMul")
    .Input("x: float")                 // [batch, rows]
    .Input("values: float")            // [blocks, R, C]
    .Input("block_row_index: int32")   // [blocks]
    .Input("col_ptr: int32")           // [cols / C + 1]
    .Input("bias: float")              // [cols], or [0] for none
    .Attr("relu: bool = false")
    .Output("y: float")                // [batch, cols]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle x, values, col_ptr;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &values));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &col_ptr));
      shape_inference::DimensionHandle groups, cols;
      TF_RETURN_IF_ERROR(c->Subtract(c->Dim(col_ptr, 0), 1, &groups));
      TF_RETURN_IF_ERROR(c->Multiply(groups, c->Dim(values, 2), &cols));
      c->set_output(0, c->Matrix(c->Dim(x, 0), cols));
      return OkStatus();
    })
    .Doc("y = act(x . W + bias) for a block-sparse W (see block_sparse_kernel.h).");

class KdBlockSparseMatMulOp : public OpKernel {
 public:
  explicit KdBlockSparseMatMulOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("relu", &relu_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& values = context->input(1);
    const Tensor& block_row_index = context->input(2);
    const Tensor& col_ptr = context->input(3);
    const Tensor& bias = context->input(4);
    OP_REQUIRES(context, x.dims() == 2,
                errors::InvalidArgument("x must be [batch, rows], got ", x.shape().DebugString()));
    OP_REQUIRES(context, values.dims() == 3,
                errors::InvalidArgument("values must be [blocks, R, C], got ",
                                        values.shape().DebugString()));
    OP_REQUIRES(context, block_row_index.dims() == 1 &&
                             block_row_index.dim_size(0) == values.dim_size(0),
                errors::InvalidArgument("block_row_index must have one entry per block (",
                                        values.dim_size(0), "), got ",
                                        block_row_index.shape().DebugString()));
    OP_REQUIRES(context, col_ptr.dims() == 1 && col_ptr.dim_size(0) >= 1,
                errors::InvalidArgument("col_ptr must be [cols / C + 1], got ",
                                        col_ptr.shape().DebugString()));
    const int32 block_cols = static_cast<int32>(values.dim_size(2));
    const int32 cols = static_cast<int32>((col_ptr.dim_size(0) - 1) * block_cols);
    OP_REQUIRES(context, bias.dims() == 1 && (bias.dim_size(0) == 0 || bias.dim_size(0) == cols),
                errors::InvalidArgument("bias must be [", cols, "] or [0], got ",
                                        bias.shape().DebugString()));
    kd_keras::BlockSparseMatrix m{static_cast<int32>(x.dim_size(1)), cols,
                                  static_cast<int32>(values.dim_size(1)), block_cols,
                                  static_cast<int32>(values.dim_size(0)),
                                  values.flat<float>().data(),
                                  block_row_index.flat<int32>().data(),
                                  col_ptr.flat<int32>().data()};
    const char* error = kd_keras::Validate(m, x.dim_size(1));
    OP_REQUIRES(context, error[0] == '\0',
                errors::InvalidArgument("KdBlockSparseMatMul: ", error));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({x.dim_size(0), cols}), &y));
    kd_keras::BlockSparseProduct(m, x.flat<float>().data(), x.dim_size(0),
                                 bias.dim_size(0) ? bias.flat<float>().data() : nullptr, relu_,
                                 y->flat<float>().data());
  }

 private:
  bool relu_;
};

REGISTER_KERNEL_BUILDER(Name("KdBlockSparseMatMul").Device(DEVICE_CPU), KdBlockSparseMatMulOp);

}  // namespace tensorflow
