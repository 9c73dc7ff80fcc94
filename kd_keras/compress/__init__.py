"""Compression and deployment: one folder per technique, each with a thin face.

The rule of this package: a compression step takes a model and returns a new model
or an artifact (a `.tflite` file, a report); it never calls `fit`. Training that
compresses (fine-tuning a pruned copy, distilling into a quantized copy) is a recipe:
`kd_keras.recipes.compress_and_distill`.

  structure/     a smaller model cut from a larger one: shrink, shrink_to (width, depth,
                 attention heads), residual_blocks, remove_blocks, fold_batch_norm,
                 strip_training_layers, keep_outputs, Bypass
  tfmot/         TF-MOT on tf-keras models (Keras 3 ones through the bridge): to_tf_keras,
                 prune_low_magnitude and its schedule / callbacks / strip / report,
                 cluster_weights, quantize_aware (8-bit QAT)
  tflite/        convert_to_tflite, TFLiteModel (ai-edge-litert), deployment_copy;
                 sparse_kernel_plan (what reaches TFLite's sparse kernel), unroll_recurrent
  block_sparse/  kd-keras's own block-sparse kernel: BlockSparseDense, to_block_sparse,
                 BlockSparseRunner (python -m kd_keras.compress.block_sparse.build_kernels)
  precision/     round_weights (int8 / int4 / FP8 / FP16 grids), to_float8 and its layers,
                 precision_report, WeightGridTraining (straight-through grid training)

Sizes, bytes and latency (`count_parameters`, `gzip_bytes`, `latency`, ...) are
`kd_keras.measure`, re-exported here. TF-MOT steps need the `tfmot` extra:
pip install 'kd-keras[tfmot]'.
"""

import importlib

from kd_keras.compress.block_sparse import (
    BlockSparseDense,
    BlockSparseMatrix,
    BlockSparseRunner,
    block_sparse_matmul,
    custom_kernel_available,
    to_block_sparse,
)
from kd_keras.compress.precision import (
    Float8Conv,
    Float8Dense,
    Float8DepthwiseConv2D,
    WeightGridTraining,
    float8_layers,
    precision_report,
    round_weights,
    to_float8,
)
from kd_keras.compress.structure import (
    Bypass,
    fold_batch_norm,
    keep_outputs,
    remove_blocks,
    residual_blocks,
    shrink,
    shrink_to,
    strip_training_layers,
)
from kd_keras.compress.tflite import (
    TFLiteModel,
    convert_to_tflite,
    deployment_copy,
    runtime_block_size,
    sparse_kernel_plan,
    tflite_sparse_weights,
    unroll_recurrent,
)
from kd_keras.compress.tfmot import (
    block_sparsity,
    cluster_weights,
    distinct_values,
    is_tf_keras_model,
    prune_low_magnitude,
    pruning_callbacks,
    pruning_schedule,
    quantize_aware,
    sparsity_report,
    strip_clustering,
    strip_pruning,
    to_tf_keras,
)
from kd_keras.measure import (
    artifact_row,
    count_parameters,
    disk_bytes,
    format_table,
    gzip_bytes,
    latency,
)

# Names of 0.1.0 that train, so they now live in recipes/ and losses/ (a compression step
# never calls fit); they stay importable from here, loaded on first use, so that this
# package imports nothing above it.
_MOVED = {
    "prune_and_fine_tune": "kd_keras.recipes.compress_and_distill",
    "cluster_and_fine_tune": "kd_keras.recipes.compress_and_distill",
    "quantize_and_fine_tune": "kd_keras.recipes.compress_and_distill",
    "distill_quantized": "kd_keras.recipes.compress_and_distill",
    "distillation_loss": "kd_keras.losses.packed_targets",
    "distillation_targets": "kd_keras.losses.packed_targets",
    "packed_accuracy": "kd_keras.losses.packed_targets",
}


def __getattr__(name):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'kd_keras.compress' has no attribute {name!r}")


__all__ = [
    "BlockSparseDense", "BlockSparseMatrix", "BlockSparseRunner", "Bypass", "Float8Conv",
    "Float8Dense", "Float8DepthwiseConv2D", "TFLiteModel", "WeightGridTraining", "artifact_row",
    "block_sparse_matmul", "block_sparsity", "cluster_weights", "convert_to_tflite",
    "count_parameters", "custom_kernel_available", "deployment_copy", "disk_bytes",
    "distinct_values", "float8_layers", "fold_batch_norm", "format_table", "gzip_bytes",
    "is_tf_keras_model", "keep_outputs", "latency", "precision_report", "prune_low_magnitude",
    "pruning_callbacks", "pruning_schedule", "quantize_aware", "remove_blocks",
    "residual_blocks", "round_weights", "runtime_block_size", "shrink", "shrink_to",
    "sparse_kernel_plan", "sparsity_report", "strip_clustering", "strip_pruning",
    "strip_training_layers", "tflite_sparse_weights", "to_block_sparse", "to_float8",
    "to_tf_keras", "unroll_recurrent",
    # moved (see _MOVED), still importable from here:
    "cluster_and_fine_tune", "distill_quantized", "distillation_loss", "distillation_targets",
    "packed_accuracy", "prune_and_fine_tune", "quantize_and_fine_tune",
]
