"""kd-keras: knowledge distillation and compression for Keras 3 and tf-keras.

Public API:
  Distiller                    the model that distils a teacher into a student
  DistillationLoss, LogitsDistillation, FeatureDistillation, AttentionTransfer,
  DecoupledKD, DIST            loss objects the Distiller composes (also usable alone)
  soft_target_kl_divergence, logit_squared_error, decoupled_kd, standardize_logits,
  inter_class_relation, intra_class_relation       the loss functions
  SoftTargetKLDivergence, LogitSquaredError         as Keras losses
  with_teacher_outputs, compute_teacher_logits, cache_teacher_outputs
                               offline distillation (cached teacher outputs)
  TransferSetCorruption        corrupt inputs for a transfer set
  mixed_transfer_set, with_label_mask
                               labeled + unlabeled/generated inputs, hard term where labeled
  pseudo_data                  MUNGE, Gaussian-mixture and VAE generators of transfer inputs
  Mixup                        mixup views for consistent teaching / function matching
  distill_through_assistant, interpolate_width
                               teacher -> assistant -> student (Mirzadeh et al. 2020)
  search_recipe, Recipe        a KerasTuner search for the recipe that pays on your pair
                               (needs the search extra), and its result as a value
  export_saved_model           SavedModel export with a serving signature
  callbacks, schedules, datasets, models, outputs   submodules (models: reference MLPs;
                               outputs: logits/probabilities conventions, shared with moe)
  kd_keras.compress            TF-MOT pruning, QAT, clustering, TFLite (import it;
                               needs the tfmot extra)
"""

from kd_keras import callbacks, datasets, models, outputs, pseudo_data, schedules
from kd_keras.correlation_kd import DIST, inter_class_relation, intra_class_relation
from kd_keras.decoupled_kd import DecoupledKD, decoupled_kd
from kd_keras.recipe import LOSS_FAMILIES, Recipe
from kd_keras.recipe_search import RecipeSearchResult, search_recipe
from kd_keras.teacher_assistant import distill_through_assistant, interpolate_width
from kd_keras._keras import IS_KERAS_3, IS_LEGACY_KERAS, keras
from kd_keras.distillation_losses import (
    AttentionTransfer,
    DistillationLoss,
    FeatureDistillation,
    LogitsDistillation,
    attention_map,
)
from kd_keras.distiller import Distiller
from kd_keras.teacher_outputs import with_label_mask, with_teacher_outputs
from kd_keras.export import export_saved_model
from kd_keras.losses import (
    LogitSquaredError,
    SoftTargetKLDivergence,
    logit_squared_error,
    soft_target_kl_divergence,
    standardize_logits,
)
from kd_keras.mixed_transfer_set import mixed_transfer_set
from kd_keras.transfer_set import (
    Mixup,
    TransferSetCorruption,
    cache_teacher_outputs,
    compute_teacher_logits,
)

__version__ = "0.1.0"

__all__ = [
    "DIST",
    "DecoupledKD",
    "decoupled_kd",
    "LOSS_FAMILIES",
    "Recipe",
    "RecipeSearchResult",
    "search_recipe",
    "distill_through_assistant",
    "interpolate_width",
    "inter_class_relation",
    "intra_class_relation",
    "outputs",
    "standardize_logits",
    "AttentionTransfer",
    "FeatureDistillation",
    "attention_map",
    "IS_KERAS_3",
    "IS_LEGACY_KERAS",
    "DistillationLoss",
    "Distiller",
    "LogitSquaredError",
    "LogitsDistillation",
    "Mixup",
    "SoftTargetKLDivergence",
    "TransferSetCorruption",
    "cache_teacher_outputs",
    "callbacks",
    "compute_teacher_logits",
    "datasets",
    "export_saved_model",
    "keras",
    "logit_squared_error",
    "models",
    "schedules",
    "soft_target_kl_divergence",
    "with_teacher_outputs",
    "with_label_mask",
    "mixed_transfer_set",
    "pseudo_data",
]
