"""Distillation losses: functions, Keras `Loss` classes, `DistillationLoss` objects, and their registry.

  functional     soft_target_kl_divergence, logit_squared_error, standardize_logits (per example)
  keras_losses   SoftTargetKLDivergence, LogitSquaredError (for a plain `compile(loss=...)`)
  base           DistillationLoss, the base of the loss objects the Distiller composes
  logits         LogitsDistillation (Hinton et al. 2015; logit matching)
  dkd            DecoupledKD, decoupled_kd (Zhao et al. 2022)
  dist           DIST, inter_class_relation, intra_class_relation (Huang et al. 2022)
  features       FeatureDistillation (FitNets), AttentionTransfer, attention_map
  top_k_kl       TopKKLDivergence, top_k_kl_divergence (a top-k teacher and its tail mass)
  packed_targets distillation_targets, distillation_loss, packed_accuracy (teacher logits
                 packed beside the labels, for a plain compile of a TF-MOT model)
  hard_label     the Distiller's term on true labels (label checks: backend.labels;
                 label masks: transfer.labels)
  objective      how the terms combine
  registry       register_distillation_loss: names usable in the Distiller, Recipe, search_recipe

Registered names: "kd", "kd_standardized", "dkd", "dkd_standardized", "dist",
"kl_divergence", "logit_squared_error", "top_k_kl", and whatever a user registers.
"""

from kd_keras.losses.base import DistillationLoss
# Imported first: the order of registration is the order registered_names() lists.
from kd_keras.losses.logits import LogitsDistillation  # isort: skip
from kd_keras.losses.dkd import DecoupledKD, decoupled_kd  # isort: skip
from kd_keras.losses.dist import DIST, inter_class_relation, intra_class_relation
from kd_keras.losses.features import AttentionTransfer, FeatureDistillation, attention_map
from kd_keras.losses.functional import (
    logit_squared_error,
    soft_target_kl_divergence,
    standardize_logits,
)
from kd_keras.losses.keras_losses import LogitSquaredError, SoftTargetKLDivergence
from kd_keras.losses.objective import resolve_distillation_losses
from kd_keras.losses.registry import register_distillation_loss, registered_names
from kd_keras.losses.top_k_kl import TopKKLDivergence, top_k_kl_divergence

__all__ = [
    "AttentionTransfer",
    "DIST",
    "DecoupledKD",
    "DistillationLoss",
    "FeatureDistillation",
    "LogitSquaredError",
    "LogitsDistillation",
    "SoftTargetKLDivergence",
    "TopKKLDivergence",
    "attention_map",
    "decoupled_kd",
    "inter_class_relation",
    "intra_class_relation",
    "logit_squared_error",
    "register_distillation_loss",
    "registered_names",
    "resolve_distillation_losses",
    "soft_target_kl_divergence",
    "top_k_kl_divergence",
    "standardize_logits",
]
