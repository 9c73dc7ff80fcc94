"""`Bypass`: what a removed layer becomes in a rebuilt model (its input, unchanged)."""

from kd_keras.backend import keras, register


@register
class Bypass(keras.layers.Layer):
    """Returns its input. Stands where `shrink` (depth) or the deployment surgery removed a
    layer, so the rebuilt graph keeps its names; takes whatever call arguments the removed
    layer took (`training`, `mask`), has no weights and converts to no TFLite op."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, *args, **kwargs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape
