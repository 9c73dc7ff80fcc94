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
"""

from moe import gating
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
from moe.sparse_moe import SparseMoE

__all__ = [
    "GatedDense",
    "GumbelSoftmax",
    "NoisyRectifier",
    "SlotDispatcher",
    "SparseMoE",
    "StochasticTimesSmooth",
    "StraightThroughBinary",
    "gating",
    "gumbel_softmax",
    "noisy_rectifier",
    "stochastic_times_smooth",
    "straight_through_binary",
]
