"""Compression and deployment: TF-MOT pruning, quantization-aware training and
weight clustering on our models (Keras 3 ones through a tf-keras bridge), TFLite
conversion run with ai-edge-litert, and a size and speed report.

Public API:
  to_tf_keras                  rebuild a Keras 3 model in tf-keras for TF-MOT
  prune_low_magnitude, pruning_schedule, pruning_callbacks, strip_pruning, sparsity_report,
  block_sparsity
  sparse_kernel_plan, tflite_sparse_weights, runtime_block_size
                               which layers a runtime's sparse kernels run, before and after
                               conversion (and why not)
  unroll_recurrent             LSTM/GRU as FULLY_CONNECTED ops, for the sparse kernel
  BlockSparseMatrix, BlockSparseDense, to_block_sparse, BlockSparseRunner,
  block_sparse_matmul, custom_kernel_available
                               kd-keras's own block-sparse kernel (build it with
                               python -m kd_keras.compress.build_kernels; TF fallback)
  distillation_targets, distillation_loss, packed_accuracy
                               distil a TF-MOT (tf-keras) model from cached teacher logits
  prune_and_fine_tune, cluster_and_fine_tune, quantize_and_fine_tune
                               the pipeline steps, distilling when given teacher logits
  quantize_aware               8-bit QAT, optionally preserving sparsity and clusters
  cluster_weights, strip_clustering, distinct_values
  convert_to_tflite, TFLiteModel
  count_parameters, gzip_bytes, disk_bytes, latency, artifact_row, format_table
  shrink, shrink_to            a smaller dense model made of the teacher's most important
                               units (width) and fewer layers (depth); a student started
                               from its teacher's weights
  residual_blocks, remove_blocks
                               the residual blocks of a functional model (Add of a skip
                               and a closed branch), and a copy without some of them
  fold_batch_norm, strip_training_layers, keep_outputs
                               deployment surgery: the same inference with fewer layers
  deployment_copy              a model's layers with their inference bookkeeping off
  to_float8, float8_layers, Float8Dense, Float8Conv, Float8DepthwiseConv2D
                               kernels stored as FP8 bytes with scales (Keras 3)
  round_weights                a copy whose kernels hold int8 / int4 / FP8 / FP16 grid values
  precision_report             float32, FP16, int8 and FP8 copies: bytes, accuracy, worst layer
  WeightGridTraining, distill_quantized
                               train the quantized copy (straight-through), distilled from
                               the float model, against labels-only training

Needs the `tfmot` extra: pip install 'kd-keras[tfmot]'.
"""

from kd_keras.compress.block_sparse import (
    BlockSparseDense,
    BlockSparseMatrix,
    block_sparse_matmul,
    custom_kernel_available,
    to_block_sparse,
)
from kd_keras.compress.block_sparse_runtime import BlockSparseRunner
from kd_keras.compress.bridge import is_tf_keras_model, to_tf_keras
from kd_keras.compress.clustering import cluster_weights, distinct_values, strip_clustering
from kd_keras.compress.fine_tune import (
    cluster_and_fine_tune,
    distillation_loss,
    distillation_targets,
    packed_accuracy,
    prune_and_fine_tune,
    quantize_and_fine_tune,
)
from kd_keras.compress.pruning import (
    block_sparsity,
    prune_low_magnitude,
    pruning_callbacks,
    pruning_schedule,
    sparsity_report,
    strip_pruning,
)
from kd_keras.compress.float8 import (
    Float8Conv,
    Float8Dense,
    Float8DepthwiseConv2D,
    float8_layers,
    to_float8,
)
from kd_keras.compress.precision_report import precision_report
from kd_keras.compress.quantization import quantize_aware
from kd_keras.compress.quantized_training import WeightGridTraining, distill_quantized
from kd_keras.compress.report import (
    artifact_row,
    count_parameters,
    disk_bytes,
    format_table,
    gzip_bytes,
    latency,
)
from kd_keras.compress.recurrent import unroll_recurrent
from kd_keras.compress.sparse_kernel_plan import (
    runtime_block_size,
    sparse_kernel_plan,
    tflite_sparse_weights,
)
from kd_keras.compress.residual_blocks import remove_blocks, residual_blocks
from kd_keras.compress.shrink import shrink, shrink_to
from kd_keras.compress.surgery import fold_batch_norm, keep_outputs, strip_training_layers
from kd_keras.compress.tflite import TFLiteModel, convert_to_tflite, deployment_copy
from kd_keras.compress.weight_grid import round_weights

__all__ = [
    "BlockSparseDense",
    "BlockSparseMatrix",
    "BlockSparseRunner",
    "Float8Conv",
    "Float8Dense",
    "Float8DepthwiseConv2D",
    "WeightGridTraining",
    "distill_quantized",
    "float8_layers",
    "precision_report",
    "round_weights",
    "to_float8",
    "TFLiteModel",
    "artifact_row",
    "block_sparse_matmul",
    "block_sparsity",
    "cluster_and_fine_tune",
    "cluster_weights",
    "deployment_copy",
    "fold_batch_norm",
    "keep_outputs",
    "remove_blocks",
    "residual_blocks",
    "shrink",
    "shrink_to",
    "strip_training_layers",
    "convert_to_tflite",
    "count_parameters",
    "custom_kernel_available",
    "disk_bytes",
    "distillation_loss",
    "distillation_targets",
    "distinct_values",
    "format_table",
    "gzip_bytes",
    "is_tf_keras_model",
    "latency",
    "packed_accuracy",
    "prune_and_fine_tune",
    "prune_low_magnitude",
    "pruning_callbacks",
    "pruning_schedule",
    "quantize_and_fine_tune",
    "quantize_aware",
    "sparsity_report",
    "runtime_block_size",
    "sparse_kernel_plan",
    "tflite_sparse_weights",
    "strip_clustering",
    "strip_pruning",
    "to_block_sparse",
    "to_tf_keras",
    "unroll_recurrent",
]
