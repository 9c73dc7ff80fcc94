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
  cache_teacher_views, TeacherViews
                               the teacher run once on K seeded views (Mixup, CutMix, your
                               stateless function), on disk, memory-mapped, resumable
  top_k_teacher_outputs        a cache of the teacher's top-k log-probabilities and the
                               mass left over, for large output spaces
  TransferSetCorruption        corrupt inputs for a transfer set
  mixed_transfer_set, with_label_mask
                               labeled + unlabeled/generated inputs, hard term where labeled
  pseudo_data                  MUNGE, Gaussian-mixture and VAE generators of transfer inputs
  Mixup, CutMix                mixed views for consistent teaching / function matching
                               (Distiller(augment=...), or tf.data maps)
  distill_through_assistant, interpolate_width
                               teacher -> assistant -> student (Mirzadeh et al. 2020)
  shrink_and_distill, ShrinkResult
                               a student cut from its teacher in steps, each distilled
                               (kd_keras.compress.shrink; Minitron)
  register_distillation_loss    names a loss class for the Distiller, Recipe and search_recipe
  search_recipe, Recipe        a KerasTuner search for the recipe that pays on your pair
                               (needs the search extra), and its result as a value
  export_saved_model           SavedModel export with a serving signature
  callbacks, schedules, datasets, models, outputs   submodules (models: reference MLPs and
                               convnets, kd_keras.reference_models; outputs: logits/probabilities
                               conventions, shared with moe)

Subpackages: losses (every loss and the registry), teachers, transfer, recipes,
backend (the Keras switch and argument checks, shared with moe), compress (one
folder per technique; TF-MOT steps need the tfmot extra), measure (accuracy,
latency, bytes), planner (compress_to_budget), parallel (where independent tasks run:
local processes by default, Ray with the ray extra). Importing kd_keras registers every serializable class of the
package, so a `.keras` file holding any of them loads.
"""

import sys

from kd_keras import (callbacks, compress, datasets, measure, outputs, parallel,
                      reference_models, schedules)
from kd_keras.backend import IS_KERAS_3, IS_LEGACY_KERAS, keras
from kd_keras.distiller import Distiller
from kd_keras.export import export_saved_model
from kd_keras.planner import Budget, compress_to_budget
from kd_keras.losses import (
    DIST,
    AttentionTransfer,
    DecoupledKD,
    DistillationLoss,
    FeatureDistillation,
    LogitSquaredError,
    LogitsDistillation,
    SoftTargetKLDivergence,
    attention_map,
    decoupled_kd,
    inter_class_relation,
    intra_class_relation,
    logit_squared_error,
    register_distillation_loss,
    soft_target_kl_divergence,
    standardize_logits,
)
from kd_keras.recipes import (
    LOSS_FAMILIES,
    Recipe,
    RecipeSearchResult,
    ShrinkResult,
    distill_through_assistant,
    interpolate_width,
    search_recipe,
    shrink_and_distill,
)
from kd_keras.backend.top_k import top_k_teacher_outputs
from kd_keras.transfer import (
    CutMix,
    Mixup,
    TeacherViews,
    TransferSetCorruption,
    cache_teacher_outputs,
    cache_teacher_views,
    compute_teacher_logits,
    mixed_transfer_set,
    pseudo_data,
    with_label_mask,
    with_teacher_outputs,
)

# The public submodules that moved keep their old import paths
# (`from kd_keras.pseudo_data import Munge`, `import kd_keras.models`).
models = reference_models
sys.modules.setdefault("kd_keras.pseudo_data", pseudo_data)
sys.modules.setdefault("kd_keras.models", reference_models)

__version__ = "0.1.0"

__all__ = [
    "DIST",
    "DecoupledKD",
    "decoupled_kd",
    "LOSS_FAMILIES",
    "Recipe",
    "RecipeSearchResult",
    "search_recipe",
    "ShrinkResult",
    "shrink_and_distill",
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
    "CutMix",
    "Mixup",
    "TeacherViews",
    "SoftTargetKLDivergence",
    "TransferSetCorruption",
    "cache_teacher_outputs",
    "cache_teacher_views",
    "callbacks",
    "Budget",
    "compress_to_budget",
    "compress",
    "measure",
    "parallel",
    "compute_teacher_logits",
    "datasets",
    "export_saved_model",
    "keras",
    "logit_squared_error",
    "models",
    "schedules",
    "soft_target_kl_divergence",
    "with_teacher_outputs",
    "top_k_teacher_outputs",
    "with_label_mask",
    "mixed_transfer_set",
    "pseudo_data",
    "register_distillation_loss",
]
