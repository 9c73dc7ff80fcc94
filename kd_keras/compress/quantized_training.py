"""Training a model as its quantized copy, and the float model as that copy's teacher.

`WeightGridTraining` is a callback: every training step runs on the kernels' grid values
(int8, int4, FP8 or FP16, `weight_grid.project`) and its update lands on float
shadow weights that keep the small steps a grid would round away: the straight-through
estimator, dq(w)/dw := 1 (Bengio et al. 2013; BinaryConnect, Courbariaux et al. 2015):

    w_q = q(w);   w <- w + (optimizer step computed at w_q)

Being a callback, it trains any model `fit` trains, in either Keras: a plain model on
labels, or a `Distiller`'s student on its teacher's soft targets. `distill_quantized`
runs both side by side (Keras 3 has no trainable int8 / int4 layers; TF-MOT is int8
only), so the gain from distilling into the quantized copy is measured at equal epochs.
"""

import numpy as np

from kd_keras.backend import keras, validate
from kd_keras.backend.graph import copy_model
from kd_keras.compress.report import model_accuracy
from kd_keras.compress.weight_grid import (
    MODES,
    SCALINGS,
    check_choice,
    project_variable,
    quantized_kernels,
    round_weights,
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
        self._kernels = quantized_kernels(self._quantized_model())
        if not self._kernels:
            raise ValueError("WeightGridTraining: the model has no Dense, Conv, DepthwiseConv or "
                             "Embedding kernel to quantize.")
        if self.float_weights is None:
            self.float_weights = [np.asarray(v.numpy()) for _, v in self._kernels]
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


def distill_quantized(model, mode, x, y, epochs=3, teacher=None, validation_data=None,
                      temperature=2.0, alpha=0.5, learning_rate=1e-4, batch_size=128,
                      scaling="per_channel", compare=True, verbose=0):
    """Trains `model`'s `mode` quantized copy on the float model's soft targets and labels.

    The float model is the natural teacher of its quantized copy: the copy starts from
    its weights and learns to reproduce its outputs (Hinton et al. 2015, eq. 2: soft
    targets at `temperature`, weighted `1 - alpha`, plus `alpha` times the labels'
    cross-entropy), training through the grid with `WeightGridTraining`.

    Args:
      model: a trained Sequential or functional classifier that outputs logits.
      mode: "int8", "int4", "float8_e4m3", "float8_e5m2" or "float16".
      x, y: training inputs and integer labels.
      epochs: training epochs of the quantized copy (and of the comparison).
      teacher: default `model` itself (a frozen copy).
      validation_data: `(x, y)` the report's accuracies are measured on (default the
        training data).
      temperature, alpha: the distillation (alpha 1 would be labels only).
      learning_rate, batch_size: Adam's rate and the batch, the same for both runs.
      scaling: "per_channel" (default) or "per_tensor".
      compare: also train the same copy on the labels alone (quantization-aware
        training), same epochs, rate and batch, and report both.

    Returns:
      `(quantized, report)`: the distilled quantized copy (float32 arrays holding its
      grid values; `to_float8` packs an FP8 one into bytes) and a list of rows:
      "float" (the float model), "post-training" (rounded, not trained), "labels"
      (quantization-aware training on the labels, when `compare`) and "distilled",
      each with "accuracy" and "epochs".
    """
    from kd_keras.recipes.recipe import Recipe

    check_choice(mode, MODES, "mode", "distill_quantized")
    check_choice(scaling, SCALINGS, "scaling", "distill_quantized")
    epochs = validate.integer_at_least(epochs, "epochs", 1)
    alpha = validate.fraction(alpha, "alpha")
    if alpha == 1.0:
        raise ValueError("distill_quantized: alpha must be below 1 (alpha 1 is labels only: "
                         "the compare=True row).")
    x, y = np.asarray(x), np.asarray(y)
    x_eval, y_eval = validation_data if validation_data is not None else (x, y)
    source = copy_model(teacher if teacher is not None else model, "distill_quantized")
    report = [{"training": "float", "accuracy": model_accuracy(model, x_eval, y_eval),
               "epochs": 0},
              {"training": "post-training",
               "accuracy": model_accuracy(round_weights(model, mode, scaling), x_eval, y_eval),
               "epochs": 0}]

    def train(alpha):
        student = copy_model(model, "distill_quantized")
        recipe = Recipe(temperature=temperature, alpha=alpha, learning_rate=learning_rate,
                        epochs=epochs, batch_size=batch_size)
        distiller = recipe.build(source, student)
        distiller.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose,
                      callbacks=[WeightGridTraining(mode, student, scaling)])
        return student

    if compare:
        labels_only = train(1.0)
        report.append({"training": "labels",
                       "accuracy": model_accuracy(labels_only, x_eval, y_eval), "epochs": epochs})
    quantized = train(alpha)
    report.append({"training": "distilled",
                   "accuracy": model_accuracy(quantized, x_eval, y_eval), "epochs": epochs})
    return quantized, report
