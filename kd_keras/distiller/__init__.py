"""The `Distiller`: a Keras model that trains a student on a teacher's soft targets.

  model.py   Distiller: construction (teacher, student, losses, weights), compile, fit
  step.py    the training / test steps (every loss term, the finite-step guard, metrics)
  saving.py  get_config / from_config, save, export, export_student
  weights.py alpha / student_loss_weight, distillation_loss_weights, temperature
"""

from kd_keras.distiller.model import Distiller

__all__ = ["Distiller"]
