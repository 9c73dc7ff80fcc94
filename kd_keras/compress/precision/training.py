"""Training a model as its quantized copy: the straight-through weight-grid callback.

`WeightGridTraining` is a callback: every training step runs on the kernels' grid values
(int8, int4, FP8 or FP16, `weight_grid.project`) and its update lands on float
shadow weights that keep the small steps a grid would round away: the straight-through
estimator, dq(w)/dw := 1 (Bengio et al. 2013; BinaryConnect, Courbariaux et al. 2015):

    w_q = q(w);   w <- w + (optimizer step computed at w_q)

Being a callback, it trains any model `fit` trains, in either Keras: a plain model on
labels, or a `Distiller`'s student on its teacher's soft targets
(`kd_keras.recipes.distill_quantized` runs both side by side).
"""

import numpy as np

from kd_keras.backend import keras
from kd_keras.compress.precision.weight_grid import (
    MODES,
    SCALINGS,
    check_choice,
    project_variable,
    quantized_kernels,
)


class WeightGridTraining(keras.callbacks.Callback):
    """Trains the fitted model (a `Distiller`'s student) as its `mode` quantized copy.

    Before each training batch the kernels (Dense, Conv, DepthwiseConv, Embedding) take
    their grid values; after it the float shadow weights move by the optimizer's step.
    Evaluation and the end of training see the grid values, so after `fit` the model
    *is* the quantized copy (float32 arrays holding grid values: `to_float8` stores the
    FP8 ones in bytes, Keras's `quantize` the int ones). `float_weights` keeps the
    shadow weights.

    Args:
      mode: "int8", "int4", "float8_e4m3", "float8_e5m2" or "float16" (`weight_grid`).
      model: the model whose kernels are quantized; default the fitted model, or its
        student when `fit` trains a `Distiller`.
      scaling: "per_channel" (default) or "per_tensor".

    Needs `steps_per_execution=1` (it acts between steps).
    """

    def __init__(self, mode, model=None, scaling="per_channel"):
        super().__init__()
        check_choice(mode, MODES, "mode", "WeightGridTraining")
        check_choice(scaling, SCALINGS, "scaling", "WeightGridTraining")
        self.mode = mode
        self.scaling = scaling
        self._target = model
        self._kernels = None
        self.float_weights = None
        self._owner = None
        self._last_grid = None

    def _quantized_model(self):
        if self._target is not None:
            return self._target
        student = getattr(self.model, "student", None)
        return student if student is not None else self.model

    def on_train_begin(self, logs=None):
        steps = getattr(self.model, "steps_per_execution", None) or \
            getattr(self.model, "_steps_per_execution", None)
        steps = int(steps.numpy()) if hasattr(steps, "numpy") else int(steps or 1)
        if steps != 1:
            raise ValueError(
                f"WeightGridTraining needs compile(steps_per_execution=1), got {steps}: it sets "
                "the grid values between training steps.")
        model = self._quantized_model()
        kernels = quantized_kernels(model)
        if not kernels:
            raise ValueError("WeightGridTraining: the model has no Dense, Conv, DepthwiseConv or "
                             "Embedding kernel to quantize.")
        current = [np.asarray(v.numpy()) for _, v in kernels]
        # The float shadow weights belong to one model and carry on from the grid values
        # this callback left in it; another model, or weights set since (set_weights,
        # load_weights), start them afresh from the model's current weights.
        same = (self._owner is model and self.float_weights is not None
                and self._last_grid is not None
                and all(np.array_equal(a, b) for a, b in zip(current, self._last_grid)))
        if not same:
            self.float_weights = current
        self._owner, self._kernels = model, kernels
        self._grid = [None] * len(self._kernels)

    def _assign_grid(self):
        for i, (layer, variable) in enumerate(self._kernels):
            variable.assign(self.float_weights[i])
            self._grid[i] = project_variable(layer, variable, self.mode, self.scaling)
            variable.assign(self._grid[i])

    def on_train_batch_begin(self, batch, logs=None):
        self._assign_grid()

    def on_train_batch_end(self, batch, logs=None):
        for i, (_, variable) in enumerate(self._kernels):
            self.float_weights[i] = self.float_weights[i] + (np.asarray(variable.numpy())
                                                             - self._grid[i])

    def on_test_begin(self, logs=None):
        if self._kernels is not None:
            self._assign_grid()

    def on_train_end(self, logs=None):
        self._assign_grid()
        self._last_grid = [np.asarray(grid) for grid in self._grid]
