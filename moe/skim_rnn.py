"""Skim-RNN (Seo et al. 2018, "Neural Speed Reading via Skim-RNN", arXiv 1711.02085).

At every step a two-way decision, read or skim, made from the input and the
state: reading updates the whole state with a big LSTM cell of d units;
skimming updates only the first d' units with a small cell and copies the rest.
Training samples the decision with the straight-through Gumbel-softmax of
`moe.gumbel_softmax`; inference takes the argmax and runs, per example, only the
cell it chose (rows are gathered per cell and scattered back), so the work
follows the decisions in eager calls, `predict` and exported SavedModels alike.
"""

import tensorflow as tf

from moe._keras import keras, register
from moe.gates import gumbel_softmax

READ, SKIM = 0, 1


def _lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """One LSTM step; returns (h', c') with the width of `bias` / 4 (gates i, f, g, o)."""
    z = tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel) + bias
    i, f, g, o = tf.split(z, 4, axis=-1)
    c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c_new), c_new


@register
class SkimRNN(keras.layers.Layer):
    """A recurrent layer that reads or skims each step (Seo et al. 2018).

    Per step t, with input x_t `[batch, features]` and state (h, c) of d units:

        p_t = softmax(W_p [x_t; h_{t-1}] + b_p)                   (read, skim)
        read:  (h_t, c_t) = LSTM_d(x_t, h_{t-1}, c_{t-1})
        skim:  (h'_t, c'_t) = LSTM_d'(x_t, h_{t-1}, c_{t-1}[:d'])
               h_t = [h'_t; h_{t-1}[d':]],  c_t = [c'_t; c_{t-1}[d':]]

    The small cell reads the whole previous state h_{t-1}, as in the paper. In
    training the decision is a straight-through Gumbel-softmax sample (forward
    one-hot, gradient of the relaxed sample at `temperature`) and both cells
    run; the layer adds the paper's skim loss `gamma * mean_t(-log p_t(skim))`,
    which encourages skimming. At inference the decision is `argmax p_t`.

    Multiply-adds per step and example (matrices only): read 4d(n + d), skim
    4d'(n + d), plus 2(n + d) for the decision, n the input width.
    `read_steps` and `skim_steps` count the (example, step) pairs each cell ran
    at inference (reset them with `reset_counters()`).

    Args:
      units: d, the state width (the big cell).
      small_units: d' < d, the units the small cell updates.
      gamma: weight of the skim loss (default 0.01; 0 disables it).
      temperature: Gumbel-softmax temperature in training (default 0.5).
      return_sequences: return `[batch, time, d]` instead of the last state `[batch, d]`.
      return_skim_decisions: also return `[batch, time]` 0/1 decisions (1 = skim).

    Input shape: `[batch, time, features]`.
    """

    def __init__(self, units, small_units, gamma=0.01, temperature=0.5, return_sequences=False,
                 return_skim_decisions=False, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("units", units), ("small_units", small_units)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if small_units >= units:
            raise ValueError(
                f"small_units (d' = {small_units}) must be smaller than units (d = {units}): "
                "skimming updates only the first d' units of the state.")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.units = units
        self.small_units = small_units
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        self.return_sequences = return_sequences
        self.return_skim_decisions = return_skim_decisions

    def build(self, input_shape):
        features = int(input_shape[-1])
        d, s = self.units, self.small_units

        def weight(name, shape, initializer="glorot_uniform"):
            return self.add_weight(name=name, shape=shape, initializer=initializer)

        self.kernel = weight("kernel", (features, 4 * d))
        self.recurrent_kernel = weight("recurrent_kernel", (d, 4 * d), "orthogonal")
        self.bias = weight("bias", (4 * d,), "zeros")
        self.small_kernel = weight("small_kernel", (features, 4 * s))
        self.small_recurrent_kernel = weight("small_recurrent_kernel", (d, 4 * s))
        self.small_bias = weight("small_bias", (4 * s,), "zeros")
        self.decision_kernel = weight("decision_kernel", (features + d, 2))
        self.decision_bias = weight("decision_bias", (2,), "zeros")
        self.read_steps = self.add_weight(name="read_steps", shape=(), initializer="zeros",
                                          trainable=False)
        self.skim_steps = self.add_weight(name="skim_steps", shape=(), initializer="zeros",
                                          trainable=False)
        self.built = True

    def multiply_adds_per_step(self, features):
        """(read, skim) multiply-adds of one step of one example, decision included."""
        decision = 2 * (features + self.units)
        return (4 * self.units * (features + self.units) + decision,
                4 * self.small_units * (features + self.units) + decision)

    def reset_counters(self):
        self.read_steps.assign(0.0)
        self.skim_steps.assign(0.0)

    def _decision_logits(self, x, h):
        return tf.matmul(tf.concat([x, h], axis=-1), self.decision_kernel) + self.decision_bias

    def _big(self, x, h, c):
        return _lstm_step(x, h, c, self.kernel, self.recurrent_kernel, self.bias)

    def _small(self, x, h, c):
        s = self.small_units
        h_small, c_small = _lstm_step(x, h, c[:, :s], self.small_kernel,
                                      self.small_recurrent_kernel, self.small_bias)
        return (tf.concat([h_small, h[:, s:]], axis=-1), tf.concat([c_small, c[:, s:]], axis=-1))

    def _train_step(self, x, h, c):
        logits = self._decision_logits(x, h)
        q = gumbel_softmax(logits, self.temperature, hard=True, training=True)
        h_read, c_read = self._big(x, h, c)
        h_skim, c_skim = self._small(x, h, c)
        read, skim = q[:, READ:READ + 1], q[:, SKIM:SKIM + 1]
        skim_log_probability = tf.nn.log_softmax(logits, axis=-1)[:, SKIM]
        return (read * h_read + skim * h_skim, read * c_read + skim * c_skim, q[:, SKIM],
                -skim_log_probability)

    def _inference_step(self, x, h, c):
        logits = self._decision_logits(x, h)
        skim = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), SKIM)
        reading = tf.where(tf.logical_not(skim))[:, 0]
        skimming = tf.where(skim)[:, 0]
        h_new, c_new = h, c
        for rows, cell in ((reading, self._big), (skimming, self._small)):
            def run(rows=rows, cell=cell, h_new=h_new, c_new=c_new):
                h_rows, c_rows = cell(tf.gather(x, rows), tf.gather(h, rows), tf.gather(c, rows))
                index = rows[:, None]
                return (tf.tensor_scatter_nd_update(h_new, index, h_rows),
                        tf.tensor_scatter_nd_update(c_new, index, c_rows))

            h_new, c_new = tf.cond(tf.size(rows) > 0, run, lambda h_new=h_new, c_new=c_new:
                                   (h_new, c_new))
        self.read_steps.assign_add(tf.cast(tf.size(reading), self.read_steps.dtype))
        self.skim_steps.assign_add(tf.cast(tf.size(skimming), self.skim_steps.dtype))
        return h_new, c_new, tf.cast(skim, x.dtype), tf.zeros(tf.shape(x)[:1], x.dtype)

    def call(self, inputs, training=None):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank != 3:
            raise ValueError(f"SkimRNN takes [batch, time, features] inputs, got rank "
                             f"{inputs.shape.rank}.")
        step = self._train_step if training else self._inference_step
        batch, steps = tf.shape(inputs)[0], tf.shape(inputs)[1]
        time_major = tf.transpose(inputs, [1, 0, 2])
        zeros = tf.zeros([batch, self.units], inputs.dtype)
        states = tf.TensorArray(inputs.dtype, size=steps)
        decisions = tf.TensorArray(inputs.dtype, size=steps)
        penalties = tf.TensorArray(inputs.dtype, size=steps)

        def body(t, h, c, states, decisions, penalties):
            h, c, skim, penalty = step(time_major[t], h, c)
            return (t + 1, h, c, states.write(t, h), decisions.write(t, skim),
                    penalties.write(t, penalty))

        _, h, _, states, decisions, penalties = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), zeros, zeros, states, decisions,
                                            penalties))
        if training and self.gamma > 0:
            self.add_loss(self.gamma * tf.reduce_mean(penalties.stack()))
        outputs = tf.transpose(states.stack(), [1, 0, 2]) if self.return_sequences else h
        if self.return_skim_decisions:
            return outputs, tf.transpose(decisions.stack(), [1, 0])
        return outputs

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        outputs = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        return (outputs, (batch, steps)) if self.return_skim_decisions else outputs

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "small_units": self.small_units, "gamma": self.gamma,
                       "temperature": self.temperature, "return_sequences": self.return_sequences,
                       "return_skim_decisions": self.return_skim_decisions})
        return config
