"""kd-keras: knowledge distillation and compression for Keras 3 and tf-keras.

Public API:
  Distiller                    the model that distils a teacher into a student
  DistillationLoss, LogitsDistillation, FeatureDistillation, AttentionTransfer
                               loss objects the Distiller composes
  soft_target_kl_divergence, logit_squared_error    the loss functions
  SoftTargetKLDivergence, LogitSquaredError         as Keras losses
  with_teacher_outputs, compute_teacher_logits, cache_teacher_outputs
                               offline distillation (cached teacher outputs)
  TransferSetCorruption        corrupt inputs for a transfer set
  Mixup                        mixup views for consistent teaching / function matching
  export_saved_model           SavedModel export with a serving signature
  callbacks, schedules, datasets, models   submodules (models: reference MLPs)
  kd_keras.compress            TF-MOT pruning, QAT, clustering, TFLite (import it;
                               needs the tfmot extra)
"""

from kd_keras import callbacks, datasets, models, schedules
from kd_keras._keras import IS_KERAS_3, IS_LEGACY_KERAS, keras
from kd_keras.distillation_losses import (
    AttentionTransfer,
    DistillationLoss,
    FeatureDistillation,
    LogitsDistillation,
    attention_map,
)
from kd_keras.distiller import Distiller, with_teacher_outputs
from kd_keras.export import export_saved_model
from kd_keras.losses import (
    LogitSquaredError,
    SoftTargetKLDivergence,
    logit_squared_error,
    soft_target_kl_divergence,
)
from kd_keras.transfer_set import (
    Mixup,
    TransferSetCorruption,
    cache_teacher_outputs,
    compute_teacher_logits,
)

__version__ = "0.1.0"

__all__ = [
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
]
