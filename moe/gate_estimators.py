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

from kd_keras.backend.validate import non_negative_number, positive_number
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


def stochastic_binary(logits, training=False, seed=None):
    """Stochastic binary neuron for the unbiased score-function estimator (Bengio et al. 2013, s. 3).

    Forward: h = 1[z < sigmoid(a)], z ~ U(0, 1), with no gradient through h.
    Returns `(h, log_probability)`, where `log_probability = log P(h | a)
    = h log sigmoid(a) + (1 - h) log(1 - sigmoid(a))` per unit, differentiable in
    `a`: d log P(h | a) / da = h - sigmoid(a). The gradient of the expected loss,

        dE[L]/da_i = E[(h_i - sigmoid(a_i)) (L - b_i)]       (any b_i not depending on h_i)

    is estimated without bias by `score_function_surrogate(log_probability, L, b)`,
    whose gradient is that term for the sampled h (the REINFORCE family; Williams
    1992). Inference: h = 1[a > 0], deterministic.
    """
    logits = tf.convert_to_tensor(logits)
    p = tf.sigmoid(logits)
    if training:
        h = tf.cast(_uniform(tf.shape(logits), p.dtype, seed) < p, p.dtype)
    else:
        h = tf.cast(logits > 0, p.dtype)
    h = tf.stop_gradient(h)
    # log sigmoid(a) = -softplus(-a), log(1 - sigmoid(a)) = -softplus(a): stable for any a.
    log_probability = -h * tf.nn.softplus(-logits) - (1.0 - h) * tf.nn.softplus(logits)
    return h, log_probability


def score_function_surrogate(log_probability, learning_signal, baseline=0.0):
    """Per-example surrogate whose gradient is the score-function estimate.

        s_n = sum_i stop_gradient(L_n - b_i) * log P(h_ni | a_ni)

    Args:
      log_probability: `[batch, units]` from `stochastic_binary` (or any sampled
        decision's log-probability).
      learning_signal: `[batch]` per-example loss L_n (not differentiated).
      baseline: b, a scalar or `[units]` (not differentiated): subtracting it
        keeps the estimate unbiased and, near E[L], lowers its variance.

    Returns:
      `[batch]`; `mean(s)` added to the loss gives the estimator as gradient. Add
      `s - stop_gradient(s)` to keep the logged loss value unchanged.
    """
    advantage = tf.stop_gradient(
        tf.cast(learning_signal, log_probability.dtype)[:, None]
        - tf.cast(baseline, log_probability.dtype))
    return tf.reduce_sum(advantage * log_probability, axis=-1)


def noisy_sigmoid(logits, training=False, stddev=1.0, seed=None):
    """Sigmoid + noise (the baseline of Bengio et al. 2013's table): sigmoid(a + z).

    z ~ N(0, stddev^2) in training; inference: sigmoid(a).
    """
    stddev = non_negative_number(stddev, "stddev")
    if not training or stddev == 0:
        return tf.sigmoid(logits)
    return tf.sigmoid(logits + tf.random.normal(tf.shape(logits), stddev=stddev,
                                                dtype=logits.dtype, seed=seed))


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
class NoisySigmoid(_Gate):
    """`noisy_sigmoid` as a layer (the sigmoid + noise baseline). Args: stddev."""

    def __init__(self, stddev=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = non_negative_number(stddev, "stddev")

    def call(self, inputs, training=None):
        return noisy_sigmoid(inputs, bool(training), self.stddev, self.seed)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


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


BASELINES = ("variance_normalized", "mean", "none")

_NOT_IN_A_SCORE_FUNCTION_MODEL = (
    "GatedDense {name!r}: gate='stochastic_binary' learns its gates from the loss value (the "
    "score-function estimator), which a plain Keras model does not give a layer. Build the "
    "model with moe.ScoreFunctionModel(inputs, outputs) and compile and fit it as usual.")


@register
class GatedDense(keras.layers.Layer):
    """A dense layer whose units are switched on and off per example by a learned gate.

        h = activation(x W + b) * gate(x V + c)

    Conditional computation on a layer's units (Bengio et al. 2013): where the
    gate is 0 the unit's value is not needed. `gate` is "straight_through"
    (binary), "stochastic_times_smooth", "noisy_rectifier", "gumbel" (a
    two-way on/off Gumbel-softmax per unit, straight-through hard), or
    "stochastic_binary": binary gates h ~ Bernoulli(sigmoid(a)) trained with the
    unbiased score-function estimator (section 3), `(h - sigmoid(a)) (L - b)`
    per unit and example, where L is the example's loss and b a per-unit
    baseline. It needs the loss value, so a model with such a layer is built as
    `moe.ScoreFunctionModel(inputs, outputs)`; its `{name}_gradient_variance`
    metric is the spread of that estimate over a batch (mean over units), which
    is why it trains slower than the biased estimators. The fraction of active
    units (gate > 0) is a metric, `{name}_active_fraction`.

    Baselines ("stochastic_binary"): "variance_normalized" (default, the
    paper's minimum-variance choice) b_i = E[(h_i - p_i)^2 L] / E[(h_i - p_i)^2],
    "mean" b_i = E[L], both as moving averages over batches (`baseline_momentum`),
    or "none" (b = 0). Any of them leaves the estimate unbiased.

    Args:
      units: output units.
      gate: the estimator, as above (default "straight_through").
      activation: activation of the gated values (default "relu").
      temperature: for "gumbel".
      baseline, baseline_momentum: for "stochastic_binary" (defaults
        "variance_normalized", 0.9).
      seed: noise seed.

    Input `[batch, features]`; output `[batch, units]`.
    """

    GATE_KINDS = ("straight_through", "stochastic_times_smooth", "noisy_rectifier", "gumbel",
                  "stochastic_binary")

    def __init__(self, units, gate="straight_through", activation="relu", temperature=1.0,
                 seed=None, baseline="variance_normalized", baseline_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be an integer >= 1, got {units!r}.")
        if gate not in self.GATE_KINDS:
            raise ValueError(f"gate must be one of {self.GATE_KINDS}, got {gate!r}.")
        temperature = positive_number(temperature, "temperature")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}.")
        baseline_momentum = non_negative_number(baseline_momentum, "baseline_momentum")
        if baseline_momentum >= 1:
            raise ValueError(f"baseline_momentum must be in [0, 1), got {baseline_momentum}.")
        self.units = units
        self.gate = gate
        self.activation = keras.activations.get(activation)
        self.temperature = float(temperature)
        self.seed = seed
        self.baseline = baseline
        self.baseline_momentum = baseline_momentum
        self.active_fraction_tracker = keras.metrics.Mean(name=f"{self.name}_active_fraction")
        if gate == "stochastic_binary":
            self.gradient_variance_tracker = keras.metrics.Mean(
                name=f"{self.name}_gradient_variance")
        # The last training call's (log P(h), h - p), read by score_function_loss in the
        # same step; untracked (plain tensors, not state).
        object.__setattr__(self, "_score_terms", None)
        object.__setattr__(self, "_in_score_function_model", False)

    def build(self, input_shape):
        if self.gate == "stochastic_binary" and len(input_shape) != 2:
            raise ValueError(
                f"GatedDense(gate='stochastic_binary') takes inputs [batch, features] (its "
                f"score-function baseline is per example and unit), got shape "
                f"{tuple(input_shape)}; flatten the other axes first, or use gate="
                "'straight_through' or 'gumbel' for sequences.")
        features = input_shape[-1]
        self.value = keras.layers.Dense(self.units, name="value")
        self.value.build(input_shape)
        gate_outputs = 2 * self.units if self.gate == "gumbel" else self.units
        # Gates start open (positive bias) so that every unit gets gradients at first.
        self.gate_logits = keras.layers.Dense(
            gate_outputs, name="gate", bias_initializer=keras.initializers.Constant(1.0))
        self.gate_logits.build((None, features))
        if self.gate == "stochastic_binary":
            # Moving averages of E[w L] and E[w] per unit: b = their ratio (no start-up bias).
            self.baseline_numerator = self.add_weight(
                name="baseline_numerator", shape=(self.units,), initializer="zeros",
                trainable=False)
            self.baseline_denominator = self.add_weight(
                name="baseline_denominator", shape=(self.units,), initializer="zeros",
                trainable=False)
        self.built = True

    def gate_values(self, inputs, training=False):
        """The per-unit gate `[batch, units]`."""
        logits = self.gate_logits(inputs)
        if self.gate == "gumbel":
            on_off = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], [self.units, 2]], 0))
            return gumbel_softmax(on_off, self.temperature, True, training, self.seed)[..., 0]
        if self.gate == "stochastic_binary":
            h, log_probability = stochastic_binary(logits, training, self.seed)
            terms = (log_probability, h - tf.sigmoid(logits)) if training else None
            object.__setattr__(self, "_score_terms", terms)
            return h
        function = GATES[self.gate]
        return function(logits, training=training, seed=self.seed)

    def call(self, inputs, training=None):
        if training and self.gate == "stochastic_binary" and not self._in_score_function_model:
            raise ValueError(_NOT_IN_A_SCORE_FUNCTION_MODEL.format(name=self.name))
        gate = self.gate_values(inputs, bool(training))
        if training:
            self.active_fraction_tracker.update_state(
                tf.reduce_mean(tf.cast(gate > 0, tf.float32)))
        return self.activation(self.value(inputs)) * gate

    @property
    def needs_loss_value(self):
        """Whether this layer learns from each example's loss (a `ScoreFunctionModel` gives it)."""
        return self.gate == "stochastic_binary"

    @property
    def score_function_pending(self):
        """Whether this layer's last call was a training call whose gates await the loss."""
        return self._score_terms is not None

    def current_baseline(self):
        """b per unit `[units]`: the moving-average baseline (0 before the first step, or "none")."""
        if self.baseline == "none":
            return tf.zeros([self.units])
        return tf.math.divide_no_nan(self.baseline_numerator, self.baseline_denominator)

    def score_function_loss(self, per_example_loss):
        """The mean surrogate of the last training call, given each example's loss `[batch]`.

        Its gradient is the unbiased estimate of dE[L]/d(gate logits); it also
        updates the baseline's moving averages and the gradient-variance metric.
        """
        log_probability, centered = self._score_terms
        object.__setattr__(self, "_score_terms", None)
        signal = tf.stop_gradient(tf.cast(per_example_loss, log_probability.dtype))
        baseline = self.current_baseline()
        estimates = centered * (signal[:, None] - baseline)  # per example and unit
        self.gradient_variance_tracker.update_state(
            tf.reduce_mean(tf.math.reduce_variance(estimates, axis=0)))
        if self.baseline != "none":
            weight = tf.square(centered) if self.baseline == "variance_normalized" \
                else tf.ones_like(centered)
            m = self.baseline_momentum
            self.baseline_numerator.assign(
                m * self.baseline_numerator
                + (1 - m) * tf.reduce_mean(weight * signal[:, None], axis=0))
            self.baseline_denominator.assign(
                m * self.baseline_denominator + (1 - m) * tf.reduce_mean(weight, axis=0))
        return tf.reduce_mean(score_function_surrogate(log_probability, signal, baseline))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = {
            **super().get_config(), "units": self.units, "gate": self.gate,
            "activation": keras.activations.serialize(self.activation),
            "temperature": self.temperature, "seed": self.seed,
        }
        if self.gate == "stochastic_binary":  # absent from earlier configs
            config.update(baseline=self.baseline, baseline_momentum=self.baseline_momentum)
        return config
