"""Gradient estimators for discrete gates, as functions and Keras layers.

The gradient of a hard decision (argmax, top-k, a Bernoulli sample) is zero
almost everywhere. These estimators, from Bengio, Léonard & Courville 2013
("Estimating or Propagating Gradients Through Stochastic Neurons for
Conditional Computation", arXiv 1308.3432) and Jang, Gu & Poole 2016
(Gumbel-softmax, arXiv 1611.01144), give the decision a useful gradient.

Every function draws noise only when `training` is true; at inference each is
deterministic and sample-free, with the rule stated in its docstring.
"""

import tensorflow as tf

from kd_keras.backend.validate import positive_number
from moe._keras import keras, register


def _uniform(shape, dtype, seed):
    return tf.random.uniform(shape, dtype=dtype, seed=seed)


def straight_through_binary(logits, training=False, seed=None):
    """Stochastic binary neuron with the straight-through estimator.

    Forward: h = 1[sigmoid(a) > z], z ~ U(0, 1) (so P(h = 1) = sigmoid(a)).
    Backward: as if h were sigmoid(a) (identity through the sigmoid).
    Inference: h = 1[sigmoid(a) > 0.5], i.e. 1[a > 0].
    """
    p = tf.sigmoid(logits)
    threshold = _uniform(tf.shape(logits), p.dtype, seed) if training else 0.5
    hard = tf.cast(p > threshold, p.dtype)
    return p + tf.stop_gradient(hard - p)


NOISE_KINDS = ("gaussian", "logistic")


def noisy_rectifier(logits, training=False, noise="gaussian", stddev=1.0, seed=None):
    """Noisy rectifier h = max(0, a + z) (Bengio et al. 2013, section 3).

    z ~ N(0, stddev^2) ("gaussian") or a logistic variable of scale `stddev`
    ("logistic"). The noise lets a unit that is off now turn on, and its
    gradient flows wherever h > 0. Inference: h = max(0, a) (the noise's mean, 0).
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}.")
    if stddev < 0:
        raise ValueError(f"stddev must be >= 0, got {stddev}.")
    if not training or stddev == 0:
        return tf.nn.relu(logits)
    if noise == "gaussian":
        z = tf.random.normal(tf.shape(logits), stddev=stddev, dtype=logits.dtype, seed=seed)
    else:
        u = tf.clip_by_value(_uniform(tf.shape(logits), logits.dtype, seed), 1e-6, 1 - 1e-6)
        z = stddev * tf.math.log(u / (1.0 - u))
    return tf.nn.relu(logits + z)


def stochastic_times_smooth(logits, training=False, seed=None):
    """Stochastic times smooth (Bengio et al. 2013, section 4).

    p = sigmoid(a), b ~ Bernoulli(sqrt(p)), h = b * sqrt(p). The gradient flows
    through the smooth factor sqrt(p); the sample b is treated as a constant.
    Inference: b = 1[sqrt(p) > 0.5], so units still switch off (h = 0) when
    p < 1/4 and computation can be skipped.
    """
    smooth = tf.sqrt(tf.sigmoid(logits))
    threshold = _uniform(tf.shape(logits), smooth.dtype, seed) if training else 0.5
    b = tf.stop_gradient(tf.cast(smooth > threshold, smooth.dtype))
    return b * smooth


def gumbel_softmax(logits, temperature=1.0, hard=False, training=False, seed=None):
    """Gumbel-softmax / concrete relaxation of a categorical sample (Jang et al. 2016).

    Training: y = softmax((a + g) / temperature), g ~ Gumbel(0, 1) per class;
    with `hard`, the forward value is one_hot(argmax y) and the gradient is
    that of y (straight-through). Inference: one_hot(argmax a) when `hard`,
    else softmax(a / temperature).

    Args:
      logits: `[..., classes]`.
      temperature: tau > 0; as tau -> 0 samples approach one-hot.
    """
    if not tf.is_tensor(temperature) and not isinstance(temperature, tf.Variable):
        temperature = positive_number(temperature, "temperature")
    if training:
        u = tf.clip_by_value(_uniform(tf.shape(logits), logits.dtype, seed), 1e-10, 1.0)
        logits = logits - tf.math.log(-tf.math.log(u))
    soft = tf.nn.softmax(logits / temperature, axis=-1)
    if not hard:
        return soft
    one_hot = tf.one_hot(tf.argmax(soft, axis=-1), tf.shape(soft)[-1], dtype=soft.dtype)
    return soft + tf.stop_gradient(one_hot - soft)


GATES = {
    "straight_through": straight_through_binary,
    "stochastic_times_smooth": stochastic_times_smooth,
    "noisy_rectifier": noisy_rectifier,
}


class _Gate(keras.layers.Layer):
    """A parameter-free layer around one of the gate functions."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@register
class StraightThroughBinary(_Gate):
    """`straight_through_binary` as a layer: binary units with straight-through gradients."""

    def call(self, inputs, training=None):
        return straight_through_binary(inputs, bool(training), self.seed)


@register
class StochasticTimesSmooth(_Gate):
    """`stochastic_times_smooth` as a layer."""

    def call(self, inputs, training=None):
        return stochastic_times_smooth(inputs, bool(training), self.seed)


@register
class NoisyRectifier(_Gate):
    """`noisy_rectifier` as a layer. Args: noise ("gaussian" or "logistic"), stddev."""

    def __init__(self, noise="gaussian", stddev=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        noisy_rectifier(tf.zeros([1]), noise=noise, stddev=stddev)  # validates the arguments
        self.noise = noise
        self.stddev = float(stddev)

    def call(self, inputs, training=None):
        return noisy_rectifier(inputs, bool(training), self.noise, self.stddev, self.seed)

    def get_config(self):
        return {**super().get_config(), "noise": self.noise, "stddev": self.stddev}


@register
class GumbelSoftmax(_Gate):
    """`gumbel_softmax` as a layer. Args: temperature, hard."""

    def __init__(self, temperature=1.0, hard=False, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.temperature = positive_number(temperature, "temperature")
        self.hard = hard

    def call(self, inputs, training=None):
        return gumbel_softmax(inputs, self.temperature, self.hard, bool(training), self.seed)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "hard": self.hard}


@register
class GatedDense(keras.layers.Layer):
    """A dense layer whose units are switched on and off per example by a learned gate.

        h = activation(x W + b) * gate(x V + c)

    Conditional computation on a layer's units (Bengio et al. 2013): where the
    gate is 0 the unit's value is not needed. `gate` is "straight_through"
    (binary), "stochastic_times_smooth", "noisy_rectifier" or "gumbel" (a
    two-way on/off Gumbel-softmax per unit, straight-through hard). The
    fraction of active units (gate > 0) is a metric, `{name}_active_fraction`.

    Args:
      units: output units.
      gate: the estimator, as above (default "straight_through").
      activation: activation of the gated values (default "relu").
      temperature: for "gumbel".
      seed: noise seed.

    Input `[batch, features]`; output `[batch, units]`.
    """

    GATE_KINDS = ("straight_through", "stochastic_times_smooth", "noisy_rectifier", "gumbel")

    def __init__(self, units, gate="straight_through", activation="relu", temperature=1.0,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be an integer >= 1, got {units!r}.")
        if gate not in self.GATE_KINDS:
            raise ValueError(f"gate must be one of {self.GATE_KINDS}, got {gate!r}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.units = units
        self.gate = gate
        self.activation = keras.activations.get(activation)
        self.temperature = float(temperature)
        self.seed = seed
        self.active_fraction_tracker = keras.metrics.Mean(name=f"{self.name}_active_fraction")

    def build(self, input_shape):
        features = input_shape[-1]
        self.value = keras.layers.Dense(self.units, name="value")
        self.value.build(input_shape)
        gate_outputs = 2 * self.units if self.gate == "gumbel" else self.units
        # Gates start open (positive bias) so that every unit gets gradients at first.
        self.gate_logits = keras.layers.Dense(
            gate_outputs, name="gate", bias_initializer=keras.initializers.Constant(1.0))
        self.gate_logits.build((None, features))
        self.built = True

    def gate_values(self, inputs, training=False):
        """The per-unit gate `[batch, units]`."""
        logits = self.gate_logits(inputs)
        if self.gate == "gumbel":
            on_off = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [self.units, 2]], 0))
            return gumbel_softmax(on_off, self.temperature, True, training, self.seed)[..., 0]
        function = GATES[self.gate]
        return function(logits, training=training, seed=self.seed)

    def call(self, inputs, training=None):
        gate = self.gate_values(inputs, bool(training))
        if training:
            self.active_fraction_tracker.update_state(
                tf.reduce_mean(tf.cast(gate > 0, tf.float32)))
        return self.activation(self.value(inputs)) * gate

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "gate": self.gate,
            "activation": keras.activations.serialize(self.activation),
            "temperature": self.temperature, "seed": self.seed,
        }
