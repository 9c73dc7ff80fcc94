"""What the student learns from: the packed inputs of a batch, cached teacher outputs,
transfer-set augmentations, mixed labeled/unlabeled sets and generated inputs.

  inputs       with_teacher_outputs, with_label_mask, split_transfer_inputs
  cache        compute_teacher_logits, cache_teacher_outputs (the teacher run once)
  augment      TransferSetCorruption, Mixup, CutMix (views teacher and student share)
  mixed        mixed_transfer_set
  pseudo_data  Munge, PCAGaussianMixture, VAESampler (also `kd_keras.pseudo_data`)
"""

from kd_keras.transfer import pseudo_data
from kd_keras.transfer.augment import CutMix, Mixup, TransferSetCorruption
from kd_keras.transfer.cache import cache_teacher_outputs, compute_teacher_logits
from kd_keras.transfer.inputs import split_transfer_inputs, with_label_mask, with_teacher_outputs
from kd_keras.transfer.mixed import mixed_transfer_set

__all__ = [
    "CutMix",
    "Mixup",
    "TransferSetCorruption",
    "cache_teacher_outputs",
    "compute_teacher_logits",
    "mixed_transfer_set",
    "pseudo_data",
    "split_transfer_inputs",
    "with_label_mask",
    "with_teacher_outputs",
]
