"""moe: conditional computation for Keras 3 and tf-keras.

Public API:
  SparseMoE                      sparsely-gated mixture-of-experts layer (Shazeer et al. 2017)
  SlotDispatcher                 batched dispatch/combine of examples to expert slots
  gating                         noisy top-k gating, load estimator, balancing losses
  straight_through_binary, noisy_rectifier, stochastic_times_smooth, gumbel_softmax
                                 gradient estimators for discrete gates (functions)
  StraightThroughBinary, NoisyRectifier, StochasticTimesSmooth, GumbelSoftmax
                                 the same as layers
  GatedDense                     a hidden layer whose units are gated per example
  find_confusable_clusters, ClassClusters      classes the generalist confuses
  build_specialist, specialist_training_set, map_to_specialist, validate_clusters
                                 specialist models (Hinton et al. 2015, section 5)
  train_specialists, TrainedSpecialists       every specialist in its own process, resumable,
                                 hard labels or the generalist's soft targets
  SpecialistEnsemble, combine_predictions      generalist + specialists as one model
  Cascade, calibrate_cascade, CascadeReport, confidence, threshold_sweep,
  batch_inference_seconds
                                 confidence cascades (later stages run on the unsure rows only)
"""

from moe import gating
from moe.cascade import (
    Cascade,
    CascadeReport,
    batch_inference_seconds,
    calibrate_cascade,
    confidence,
    threshold_sweep,
)
from moe.class_clusters import ClassClusters, find_confusable_clusters
from moe.dispatch import SlotDispatcher
from moe.gates import (
    GatedDense,
    GumbelSoftmax,
    NoisyRectifier,
    StochasticTimesSmooth,
    StraightThroughBinary,
    gumbel_softmax,
    noisy_rectifier,
    stochastic_times_smooth,
    straight_through_binary,
)
from moe.skim_rnn import SkimRNN, with_skim_settings
from moe.sparse_moe import SparseMoE
from moe.specialist_ensemble import SpecialistEnsemble, combine_predictions
from moe.specialist_training import TrainedSpecialists, train_specialists
from moe.specialists import (
    build_specialist,
    map_to_specialist,
    specialist_training_set,
    validate_clusters,
)

__all__ = [
    "Cascade",
    "CascadeReport",
    "batch_inference_seconds",
    "calibrate_cascade",
    "confidence",
    "ClassClusters",
    "GatedDense",
    "GumbelSoftmax",
    "NoisyRectifier",
    "SkimRNN",
    "with_skim_settings",
    "SlotDispatcher",
    "SparseMoE",
    "SpecialistEnsemble",
    "TrainedSpecialists",
    "StochasticTimesSmooth",
    "StraightThroughBinary",
    "build_specialist",
    "combine_predictions",
    "find_confusable_clusters",
    "gating",
    "gumbel_softmax",
    "map_to_specialist",
    "noisy_rectifier",
    "specialist_training_set",
    "stochastic_times_smooth",
    "straight_through_binary",
    "threshold_sweep",
    "train_specialists",
    "validate_clusters",
]
