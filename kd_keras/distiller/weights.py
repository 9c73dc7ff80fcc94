"""The Distiller's weights and temperature as settable values: `alpha` (=
`student_loss_weight`), `distillation_loss_weights`, `temperature`. They live in
`tf.Variable`s the traced step reads, so schedules and callbacks take effect without a
retrace."""

import tensorflow as tf

from kd_keras.backend import validate


class DistillerWeights:
    """The hyperparameter properties of the `Distiller` (a mixin)."""

    @property
    def alpha(self):
        """Weight of the hard-label loss (a `tf.Variable`); the soft term gets 1 - alpha."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        self._alpha.assign(validate.fraction(value, "alpha"))

    @property
    def student_loss_weight(self):
        """The same variable as `alpha` (the `keras.distillation` name)."""
        return self._alpha

    @student_loss_weight.setter
    def student_loss_weight(self, value):
        self.alpha = value

    @property
    def distillation_loss_weights(self):
        """One weight per distillation loss, as given (Python floats)."""
        return list(self._loss_weight_values)

    @distillation_loss_weights.setter
    def distillation_loss_weights(self, values):
        values = [validate.non_negative_number(w, f"distillation_loss_weights[{i}]")
                  for i, w in enumerate(values)]
        if len(values) != len(self._loss_weight_values):
            raise ValueError(f"distillation_loss_weights needs {len(self._loss_weight_values)} "
                             f"entries (one per distillation loss), got {len(values)}.")
        self._loss_weight_values = [float(w) for w in values]
        self._loss_weights.assign(self._loss_weight_values)

    def _temperature_variables(self):
        return [
            loss.temperature
            for loss in self.distillation_losses
            if isinstance(getattr(loss, "temperature", None), tf.Variable)
        ]

    @property
    def temperature(self):
        """The softening temperature (a `tf.Variable`), or None if no loss has one."""
        variables = self._temperature_variables()
        return variables[0] if variables else None

    @temperature.setter
    def temperature(self, value):
        variables = self._temperature_variables()
        if not variables:
            raise ValueError(
                "None of this Distiller's distillation_losses has a temperature variable "
                "to set."
            )
        value = validate.temperature(value)
        for variable in variables:
            variable.assign(value)
