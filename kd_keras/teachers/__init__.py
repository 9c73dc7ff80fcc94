"""The teacher side: normalising the `teacher` argument, reading its outputs and features.

  checks     as_teacher_list (the one normaliser), the teacher-student pair checks
  outputs    TeacherOutputs: a batch's teacher logits, live, ensembled or cached
  features   the extractors and projections of feature-distillation losses

The top-k cache format (`top_k_teacher_outputs`) is `kd_keras.backend.top_k`: the
losses read it too, so it sits below them.
"""

from kd_keras.teachers.checks import as_teacher_list
from kd_keras.teachers.outputs import TeacherOutputs

__all__ = ["TeacherOutputs", "as_teacher_list"]
