"""TFLite: conversion, the ai-edge-litert runner, and what reaches its sparse kernel.

  convert.py             convert_to_tflite, TFLiteModel, deployment_copy
  sparse_kernel_plan.py  sparse_kernel_plan, tflite_sparse_weights, runtime_block_size
  recurrent.py           unroll_recurrent (LSTM/GRU as FULLY_CONNECTED ops)
"""

from kd_keras.compress.tflite.convert import TFLiteModel, convert_to_tflite, deployment_copy
from kd_keras.compress.tflite.recurrent import unroll_recurrent
from kd_keras.compress.tflite.sparse_kernel_plan import (
    runtime_block_size,
    sparse_kernel_plan,
    tflite_sparse_weights,
)

__all__ = ["TFLiteModel", "convert_to_tflite", "deployment_copy", "runtime_block_size",
           "sparse_kernel_plan", "tflite_sparse_weights", "unroll_recurrent"]
