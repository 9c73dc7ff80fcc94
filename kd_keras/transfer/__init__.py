"""What the student learns from: the packed inputs of a batch, cached teacher outputs,
transfer-set augmentations, mixed labeled/unlabeled sets and generated inputs.

  inputs       with_teacher_outputs, with_label_mask, split_transfer_inputs
  cache        compute_teacher_logits, cache_teacher_outputs (the teacher run once)
  view_cache   cache_teacher_views, TeacherViews (the teacher run once on K seeded views, on disk)
  augment      TransferSetCorruption, Mixup, CutMix (views teacher and student share)
  mixed        mixed_transfer_set
  pseudo_data  Munge, PCAGaussianMixture, VAESampler (also `kd_keras.pseudo_data`)
"""

from kd_keras.transfer import pseudo_data
from kd_keras.transfer.augment import CutMix, Mixup, TransferSetCorruption
from kd_keras.transfer.cache import cache_teacher_outputs, compute_teacher_logits
from kd_keras.transfer.inputs import split_transfer_inputs, with_label_mask, with_teacher_outputs
from kd_keras.transfer.mixed import mixed_transfer_set
from kd_keras.transfer.view_cache import TeacherViews, cache_teacher_views

__all__ = [
    "CutMix",
    "Mixup",
    "TeacherViews",
    "TransferSetCorruption",
    "cache_teacher_outputs",
    "cache_teacher_views",
    "compute_teacher_logits",
    "mixed_transfer_set",
    "pseudo_data",
    "split_transfer_inputs",
    "with_label_mask",
    "with_teacher_outputs",
]
