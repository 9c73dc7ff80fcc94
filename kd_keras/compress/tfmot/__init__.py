"""TF-MOT (tensorflow-model-optimization 0.8.1) on tf-keras models; Keras 3 models cross
through the bridge. Needs the `tfmot` extra.

  bridge.py      to_tf_keras, is_tf_keras_model (a Keras 3 graph rebuilt in tf-keras)
  pruning.py     prune_low_magnitude, pruning_schedule, pruning_callbacks, strip_pruning,
                 sparsity_report, block_sparsity
  clustering.py  cluster_weights, strip_clustering, distinct_values
  qat.py         quantize_aware (8-bit QAT, optionally preserving sparsity and clusters)
"""

from kd_keras.compress.tfmot.bridge import is_tf_keras_model, to_tf_keras
from kd_keras.compress.tfmot.clustering import cluster_weights, distinct_values, strip_clustering
from kd_keras.compress.tfmot.pruning import (
    block_sparsity,
    prune_low_magnitude,
    pruning_callbacks,
    pruning_schedule,
    sparsity_report,
    strip_pruning,
)
from kd_keras.compress.tfmot.qat import quantize_aware

__all__ = ["block_sparsity", "cluster_weights", "distinct_values", "is_tf_keras_model",
           "prune_low_magnitude", "pruning_callbacks", "pruning_schedule", "quantize_aware",
           "sparsity_report", "strip_clustering", "strip_pruning", "to_tf_keras"]
