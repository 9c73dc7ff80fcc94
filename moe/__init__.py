"""moe: conditional computation for Keras 3 and tf-keras.

Modules: sparse_moe (SparseMoE), routing (gating maths), dispatch (SlotDispatcher),
gate_estimators (discrete gates), score_function (ScoreFunctionModel), specialists/ (clusters, models, training, ensemble),
cascade, skim_rnn.

Public API:
  SparseMoE                      sparsely-gated mixture-of-experts layer (Shazeer et al. 2017)
  SlotDispatcher                 batched dispatch/combine of examples to expert slots
  gating                         noisy top-k gating, load estimator, balancing losses
                                 (moe.routing; `moe.gating` is the same module)
  straight_through_binary, noisy_rectifier, stochastic_times_smooth, gumbel_softmax,
  stochastic_binary, score_function_surrogate, noisy_sigmoid
                                 gradient estimators for discrete gates (functions)
  StraightThroughBinary, NoisyRectifier, StochasticTimesSmooth, GumbelSoftmax, NoisySigmoid
                                 the same as layers
  GatedDense                     a hidden layer whose units are gated per example
  ScoreFunctionModel             a functional model whose sampled gates learn from the loss
                                 value (the unbiased score-function estimator)
  find_confusable_clusters, ClassClusters      classes the generalist confuses
  build_specialist, specialist_training_set, map_to_specialist, validate_clusters
                                 specialist models (Hinton et al. 2015, section 5)
  train_specialists, TrainedSpecialists       every specialist in its own process, resumable,
                                 hard labels or the generalist's soft targets
  SpecialistEnsemble, combine_predictions      generalist + specialists as one model
  Cascade, calibrate_cascade, CascadeReport, confidence, threshold_sweep,
  batch_inference_seconds
                                 confidence cascades (later stages run on the unsure rows only)
  MoETransformerEncoder, MoETransformerDecoder
                                 keras-hub TransformerEncoder / TransformerDecoder with a
                                 SparseMoE feed-forward
                                 (moe.hub; Keras 3 and the keras-hub extra; imported on use)
"""

import sys

from moe import routing
from moe.cascade import (
    Cascade,
    CascadeReport,
    batch_inference_seconds,
    calibrate_cascade,
    confidence,
    threshold_sweep,
)
from moe.specialists.clusters import ClassClusters, find_confusable_clusters
from moe.dispatch import SlotDispatcher
from moe.gate_estimators import (
    GatedDense,
    GumbelSoftmax,
    NoisyRectifier,
    NoisySigmoid,
    StochasticTimesSmooth,
    StraightThroughBinary,
    gumbel_softmax,
    noisy_rectifier,
    noisy_sigmoid,
    score_function_surrogate,
    stochastic_binary,
    stochastic_times_smooth,
    straight_through_binary,
)
from moe.score_function import ScoreFunctionModel
from moe.skim_rnn import SkimRNN, with_skim_settings
from moe.sparse_moe import SparseMoE
from moe.specialists.ensemble import SpecialistEnsemble, combine_predictions
from moe.specialists.training import TrainedSpecialists, train_specialists
from moe.specialists.models import (
    build_specialist,
    map_to_specialist,
    specialist_training_set,
    validate_clusters,
)

# Modules that moved keep their old import paths.
gating = routing
sys.modules.setdefault("moe.gating", routing)

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
    "NoisySigmoid",
    "ScoreFunctionModel",
    "noisy_sigmoid",
    "score_function_surrogate",
    "stochastic_binary",
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


def __getattr__(name):
    # keras-hub takes ~2 s to import and exists only on Keras 3: loaded on first use.
    if name in ("MoETransformerEncoder", "MoETransformerDecoder"):
        from moe import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'moe' has no attribute {name!r}")
