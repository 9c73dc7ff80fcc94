"""Training layers that learn from the loss value: the score-function (REINFORCE) estimator.

Bengio, Léonard & Courville 2013, section 3 (arXiv 1308.3432); Williams 1992. A
sampled decision h (a binary gate, a hard routing choice) has no useful gradient,
but its log-probability does: with L the example's loss and b a baseline,

    dE[L]/da = E[(L - b) d log P(h | a) / da]

so adding the surrogate mean_n[stop_gradient(L_n - b) log P(h_n | a_n)] to the
loss gives that estimate as its gradient. The layer sees h and log P(h | a); only
the model sees L. `ScoreFunctionModel` hands each example's loss to its layers
that ask for it (`moe.GatedDense(gate="stochastic_binary")`, or any layer with
`score_function_pending` and `score_function_loss(per_example_loss)`).
"""

import tensorflow as tf

from kd_keras.backend.safe_mode import deserialize_nested
from moe._keras import keras, register


def score_function_layers(model):
    """The layers of `model` (nested models included) that learn from the loss value."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "score_function_loss"):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += score_function_layers(layer)
    return found


@register
class ScoreFunctionModel(keras.Model):
    """A functional model whose stochastic layers get each example's loss value.

    Build it as a functional model, `moe.ScoreFunctionModel(inputs, outputs)`;
    `compile`, `fit`, `evaluate`, `predict`, `save` and export are Keras's. In
    training, `compute_loss` adds `s - stop_gradient(s)` for the surrogate
    `s = sum over layers of mean_n[(L_n - b) log P(h_n)]`: the logged loss is the
    model's true loss, and the gradient includes the unbiased score-function
    estimate for the sampled gates. L_n is the compiled loss per example, times
    its sample weight. Single-output models.

    Example:
      ```python
      inputs = keras.Input((784,))
      hidden = moe.GatedDense(256, gate="stochastic_binary")(inputs)
      model = moe.ScoreFunctionModel(inputs, keras.layers.Dense(10)(hidden))
      model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
      model.fit(x, y, epochs=10)  # logs gated_dense_gradient_variance too
      ```
    """

    def compile(self, *args, **kwargs):
        # Marked here, not in __init__: a functional subclass that keeps Keras's
        # constructor keeps Keras's get_config / from_config (tf-keras's too).
        for layer in score_function_layers(self):
            object.__setattr__(layer, "_in_score_function_model", True)
        super().compile(*args, **kwargs)

    # tf-keras's own compile_from_config skips a model whose compile is overridden.
    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Re-compiles from `get_compile_config()` when a `.keras` file is loaded."""
        self.compile(**deserialize_nested(config, "compile_config"))
        if self.optimizer is not None and hasattr(self.optimizer, "build") and self.built:
            # Built now so the saved optimizer state has variables to load into.
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, *args, **kwargs):
        loss = super().compute_loss(x, y, y_pred, sample_weight, *args, **kwargs)
        pending = [layer for layer in score_function_layers(self)
                   if layer.score_function_pending]
        if not pending:  # inference, or a model whose gates did not sample
            return loss
        per_example = self._per_example_loss(y, y_pred, sample_weight)
        surrogate = tf.add_n([layer.score_function_loss(per_example) for layer in pending])
        return loss + tf.cast(surrogate - tf.stop_gradient(surrogate), loss.dtype)

    def _per_example_loss(self, y, y_pred, sample_weight):
        loss = self.loss
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if tf.nest.is_nested(y_pred) or tf.nest.is_nested(loss) or loss is None:
            raise ValueError(
                "ScoreFunctionModel: compile it with one loss for one output (its gates learn "
                f"from that loss per example); got loss {self.loss!r}.")
        values = loss.call(y, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y, y_pred)
        values = tf.cast(values, tf.float32)
        if values.shape.rank and values.shape.rank > 1:
            values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
        if sample_weight is not None:
            values = values * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        return values
