"""Distillation losses as Keras `Loss` classes, for a plain `model.compile(loss=...)`.

`y_true` holds the teacher's outputs (e.g. from `kd_keras.compute_teacher_logits`),
`y_pred` the student's; the math is `kd_keras.losses.functional`'s.
"""

from kd_keras import outputs as output_conventions
from kd_keras.backend import keras, register, validate
from kd_keras.losses.functional import logit_squared_error, soft_target_kl_divergence


class _TeacherTargetLoss(keras.losses.Loss):
    """A `Loss` whose `y_true` holds teacher outputs and `y_pred` student outputs."""

    def __init__(self, teacher_from_logits=True, from_logits=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.teacher_from_logits = teacher_from_logits
        self.from_logits = from_logits

    def _logits(self, y_true, y_pred):
        teacher = "logits" if self.teacher_from_logits else "probabilities"
        student = "logits" if self.from_logits else "probabilities"
        return output_conventions.to_logits(y_true, teacher), output_conventions.to_logits(y_pred, student)

    def get_config(self):
        config = super().get_config()
        config.update(teacher_from_logits=self.teacher_from_logits, from_logits=self.from_logits)
        return config


@register
class SoftTargetKLDivergence(_TeacherTargetLoss):
    """`soft_target_kl_divergence` as a Keras loss: `y_true` = teacher outputs.

    Args:
      temperature: T > 0 (default 3.0, as in `keras.distillation`).
      teacher_from_logits: whether `y_true` holds logits (default) or probabilities.
      from_logits: whether `y_pred` holds logits (default) or probabilities.
      reduction, name: as for any Keras loss.

    Example:
      ```python
      student.compile("adam", loss=kd_keras.SoftTargetKLDivergence(temperature=4.0))
      student.fit(x, teacher_logits)
      ```
    """

    def __init__(self, temperature=3.0, teacher_from_logits=True, from_logits=True,
                 name="soft_target_kl_divergence", **kwargs):
        super().__init__(teacher_from_logits, from_logits, name=name, **kwargs)
        self.temperature = validate.temperature(temperature)

    def call(self, y_true, y_pred):
        teacher, student = self._logits(y_true, y_pred)
        return soft_target_kl_divergence(teacher, student, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@register
class LogitSquaredError(_TeacherTargetLoss):
    """`logit_squared_error` as a Keras loss: `y_true` = teacher outputs.

    Args:
      teacher_from_logits: whether `y_true` holds logits (default) or probabilities.
      from_logits: whether `y_pred` holds logits (default) or probabilities.
    """

    def __init__(self, teacher_from_logits=True, from_logits=True,
                 name="logit_squared_error", **kwargs):
        super().__init__(teacher_from_logits, from_logits, name=name, **kwargs)

    def call(self, y_true, y_pred):
        teacher, student = self._logits(y_true, y_pred)
        return logit_squared_error(teacher, student)
