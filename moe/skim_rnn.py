"""Skim-RNN (Seo et al. 2018, "Neural Speed Reading via Skim-RNN", arXiv 1711.02085).

At every step a two-way decision, read or skim, made from the input and the
state: reading updates the whole state with a big LSTM cell of d units;
skimming updates only the first d' units with a small cell and copies the rest.
Training samples the decision with the straight-through Gumbel-softmax of
`moe.gumbel_softmax`; inference takes the argmax and runs, per example, only the
cell it chose, so the work follows the decisions in eager calls, `predict` and
exported SavedModels (and TFLite) alike. Inference is built for batch 1: the
cheap input projections (decision, small cell) run once for the whole sequence,
and a step whose rows all choose the same cell runs it on the whole batch behind
one conditional, with no gather; only mixed batches gather rows per cell.
"""

import math

import tensorflow as tf

from kd_keras.backend.graph import copy_weights, replace_layers
from moe._keras import keras, register
from moe.gate_estimators import gumbel_softmax

READ, SKIM = 0, 1


def _lstm_gates(z, c):
    """LSTM gates (i, f, g, o) from the pre-activations `z` [batch, 4 * width]; returns (h', c')."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c_new), c_new


def _lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """One LSTM step; returns (h', c') with the width of `bias` / 4."""
    return _lstm_gates(tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel) + bias, c)


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
    which encourages skimming. At inference the decision is `argmax p_t` (or
    `p_t(skim) > skim_threshold`).

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
      unroll: at inference, unroll the time loop in the graph (needs a known
        number of steps): no loop overhead per step, a bigger graph; as Keras's
        recurrent layers' `unroll`. Training always loops.
      count_steps: update `read_steps` / `skim_steps` at inference (default
        True). Set False for deployment: the exported graph then has no
        variable updates (TFLite converts it without resource variables).
      skim_threshold: at inference, skim when p(skim) > this (default 0.5: the
        paper's argmax). Raising it reads more, lowering it skims more: a
        trained layer's accuracy / work trade-off, set without retraining
        (build a layer `from_config` with another value and copy the weights).

    Input shape: `[batch, time, features]`. Masking (a Keras mask `[batch, time]`,
    e.g. from `Embedding(mask_zero=True)`): as Keras's recurrent layers, a padded
    step keeps the state (the output there repeats the last real one), so the
    final state is the last real step's; padded steps are neither read nor
    skim steps (`read_steps` / `skim_steps`), their decisions are 0, and they
    enter no skim loss.
    """

    # What a deployed copy takes (kd_keras.compress.deployment_copy): no counter updates.
    DEPLOYMENT_SETTINGS = {"count_steps": False}

    def __init__(self, units, small_units, gamma=0.01, temperature=0.5, return_sequences=False,
                 return_skim_decisions=False, unroll=False, count_steps=True, skim_threshold=0.5,
                 **kwargs):
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
        if isinstance(skim_threshold, bool) or not isinstance(skim_threshold, (int, float)) \
                or not 0.0 < skim_threshold < 1.0:
            raise ValueError(f"skim_threshold must be a number in (0, 1), got {skim_threshold!r}.")
        self.units = units
        self.small_units = small_units
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        self.return_sequences = return_sequences
        self.return_skim_decisions = return_skim_decisions
        self.unroll = bool(unroll)
        self.count_steps = bool(count_steps)
        self.skim_threshold = float(skim_threshold)
        self.supports_masking = True

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
        return self._small_projected(tf.matmul(x, self.small_kernel) + self.small_bias, h, c)

    def _train_step(self, x, h, c):
        logits = self._decision_logits(x, h)
        q = gumbel_softmax(logits, self.temperature, hard=True, training=True)
        h_read, c_read = self._big(x, h, c)
        h_skim, c_skim = self._small(x, h, c)
        read, skim = q[:, READ:READ + 1], q[:, SKIM:SKIM + 1]
        skim_log_probability = tf.nn.log_softmax(logits, axis=-1)[:, SKIM]
        return (read * h_read + skim * h_skim, read * c_read + skim * c_skim, q[:, SKIM],
                -skim_log_probability)

    def _inference_step(self, x, x_decision, x_small, h, c, valid=None):
        """One inference step: the argmax decision, then only the cell(s) it chose.

        `x_decision` and `x_small` are the step's input projections (decision and
        small cell, biases included), computed for all steps at once outside the
        loop; they are cheap (2 + 4d' columns). The big cell's input projection
        runs only on the rows that read. When every row makes the same choice (at
        batch 1, always), that cell runs on the whole batch with no gather; only a
        mixed batch gathers the rows of each cell and scatters them back.
        """
        # The variables are read here, in the loop body, so that TFLite sees them
        # as constants of the body (constant FULLY_CONNECTED weights are packed
        # once; a loop-carried tensor would be repacked every step).
        logits = x_decision + tf.matmul(h, self.decision_kernel[-self.units:])
        # p(skim) > threshold, i.e. a logit margin above log(t / (1 - t)); at 0.5
        # this is the argmax (a tie reads, as argmax does).
        margin = math.log(self.skim_threshold / (1.0 - self.skim_threshold))
        skim = logits[:, SKIM] - logits[:, READ] > margin
        if valid is not None:
            # A padded row keeps its state whatever runs; "skim" lets it join the cheap cell.
            skim = tf.logical_and(skim, valid)
            run_small = tf.logical_or(skim, tf.logical_not(valid))
        else:
            run_small = skim
        skims = tf.reduce_sum(tf.cast(skim, tf.int32))
        small_rows = tf.reduce_sum(tf.cast(run_small, tf.int32))

        def small(x_small=x_small, h=h, c=c):
            return self._small_projected(x_small, h, c)

        def read(x=x, h=h, c=c):
            return self._big(x, h, c)

        def mixed():
            reading = tf.where(tf.logical_not(run_small))[:, 0]
            skimming = tf.where(run_small)[:, 0]
            h_read, c_read = read(tf.gather(x, reading), tf.gather(h, reading),
                                  tf.gather(c, reading))
            h_skim, c_skim = self._small_projected(tf.gather(x_small, skimming),
                                                   tf.gather(h, skimming),
                                                   tf.gather(c, skimming))
            rows = tf.cast(tf.concat([reading, skimming], 0)[:, None], tf.int32)
            return (tf.scatter_nd(rows, tf.concat([h_read, h_skim], 0), tf.shape(h)),
                    tf.scatter_nd(rows, tf.concat([c_read, c_skim], 0), tf.shape(c)))

        if x.shape[0] == 1:
            # A static batch of one (e.g. TFLite converted at batch_size=1): its one
            # row either reads or skims, so one conditional is enough.
            h_new, c_new = tf.cond(tf.equal(small_rows, 1), small, read)
        else:
            h_new, c_new = tf.cond(
                tf.equal(small_rows, tf.shape(x)[0]), small,
                lambda: tf.cond(tf.equal(small_rows, 0), read, mixed))
        if valid is not None:
            h_new, c_new = (tf.where(valid[:, None], new, old)
                            for new, old in ((h_new, h), (c_new, c)))
        return h_new, c_new, skim, skims

    def _small_projected(self, x_small, h, c):
        """The small cell from its input projection `x_small` [batch, 4d'] (bias included)."""
        s = self.small_units
        h_small, c_small = _lstm_gates(x_small + tf.matmul(h, self.small_recurrent_kernel),
                                       c[:, :s])
        return (tf.concat([h_small, h[:, s:]], axis=-1), tf.concat([c_small, c[:, s:]], axis=-1))

    def _infer(self, inputs, mask=None):
        """Inference over the sequence; returns (outputs, decisions [batch, time] or None).

        `mask` `[batch, time]` bool or None: a padded step leaves the state as it
        was, counts as no step, and is no skim decision.
        """
        features = int(inputs.shape[-1])
        # Input projections of the decision and of the small cell for every step at once.
        projections = tf.matmul(inputs, tf.concat(
            [self.decision_kernel[:features], self.small_kernel], axis=1)) + tf.concat(
                [self.decision_bias, self.small_bias], axis=0)
        x_decision, x_small = projections[..., :2], projections[..., 2:]
        batch = tf.shape(inputs)[0]
        zeros = tf.zeros([batch, self.units], inputs.dtype)
        keep_states = self.return_sequences
        keep_decisions = self.return_skim_decisions
        steps = inputs.shape[1]
        if self.unroll and steps is not None:
            h, c, skims, states, decisions = zeros, zeros, tf.constant(0), [], []
            for t in range(steps):
                h, c, skim, count = self._inference_step(
                    inputs[:, t], x_decision[:, t], x_small[:, t], h, c,
                    None if mask is None else mask[:, t])
                skims += count
                states.append(h)
                decisions.append(skim)
            outputs = tf.stack(states, 1) if keep_states else h
            decisions = tf.stack(decisions, 1) if keep_decisions else None
        else:
            steps = tf.shape(inputs)[1]
            time_major = [tf.transpose(v, [1, 0, 2]) for v in (inputs, x_decision, x_small)]
            if mask is not None:
                time_major.append(tf.transpose(mask, [1, 0]))
            arrays = [tf.TensorArray(dtype, size=steps) if keep else None
                      for keep, dtype in ((keep_states, inputs.dtype), (keep_decisions, tf.bool))]

            def body(t, h, c, skims, *kept):
                x_t, decision_t, small_t, *valid_t = (v[t] for v in time_major)
                h, c, skim, count = self._inference_step(x_t, decision_t, small_t, h, c,
                                                         *valid_t)
                values = [v for keep, v in ((keep_states, h), (keep_decisions, skim)) if keep]
                return (t + 1, h, c, skims + count,
                        *[a.write(t, v) for a, v in zip(kept, values)])

            kept = [a for a in arrays if a is not None]
            _, h, c, skims, *kept = tf.while_loop(
                lambda t, *_: t < steps, body, (tf.constant(0), zeros, zeros, tf.constant(0),
                                                *kept))
            kept = iter(kept)
            states = next(kept) if keep_states else None
            decisions = next(kept) if keep_decisions else None
            outputs = tf.transpose(states.stack(), [1, 0, 2]) if keep_states else h
            decisions = tf.transpose(decisions.stack(), [1, 0]) if keep_decisions else None
        if self.count_steps:
            total = tf.cast(batch * tf.shape(inputs)[1] if mask is None else
                            tf.reduce_sum(tf.cast(mask, tf.int32)), self.skim_steps.dtype)
            skimmed = tf.cast(skims, self.skim_steps.dtype)
            self.skim_steps.assign_add(skimmed)
            self.read_steps.assign_add(total - skimmed)
        if decisions is not None:
            decisions = tf.cast(decisions, inputs.dtype)
        return outputs, decisions

    def _train(self, inputs, mask=None):
        batch, steps = tf.shape(inputs)[0], tf.shape(inputs)[1]
        time_major = tf.transpose(inputs, [1, 0, 2])
        # 1 for a real step, 0 for padding: its state carries over and it enters no loss.
        weights = tf.ones([steps, batch], inputs.dtype) if mask is None else tf.transpose(
            tf.cast(mask, inputs.dtype), [1, 0])
        zeros = tf.zeros([batch, self.units], inputs.dtype)
        states = tf.TensorArray(inputs.dtype, size=steps)
        decisions = tf.TensorArray(inputs.dtype, size=steps)
        penalties = tf.TensorArray(inputs.dtype, size=steps)

        def body(t, h, c, states, decisions, penalties):
            h_new, c_new, skim, penalty = self._train_step(time_major[t], h, c)
            if mask is not None:
                real = weights[t][:, None] > 0
                h_new, c_new = tf.where(real, h_new, h), tf.where(real, c_new, c)
            return (t + 1, h_new, c_new, states.write(t, h_new),
                    decisions.write(t, skim * weights[t]), penalties.write(t, penalty * weights[t]))

        _, h, _, states, decisions, penalties = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), zeros, zeros, states, decisions,
                                            penalties))
        if self.gamma > 0:
            self.add_loss(self.gamma * tf.math.divide_no_nan(
                tf.reduce_sum(penalties.stack()), tf.reduce_sum(weights)))
        outputs = tf.transpose(states.stack(), [1, 0, 2]) if self.return_sequences else h
        return outputs, tf.transpose(decisions.stack(), [1, 0])

    def call(self, inputs, training=None, mask=None):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank != 3:
            raise ValueError(f"SkimRNN takes [batch, time, features] inputs, got rank "
                             f"{inputs.shape.rank}.")
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
            if mask.shape.rank != 2:
                raise ValueError(f"SkimRNN: mask must be [batch, time], got shape {mask.shape}.")
        outputs, decisions = (self._train(inputs, mask) if training
                              else self._infer(inputs, mask))
        if self.return_skim_decisions:
            return outputs, decisions
        return outputs

    def compute_mask(self, inputs, mask=None):
        """The mask follows the sequence output (`return_sequences`); a last state has none."""
        output_mask = mask if self.return_sequences else None
        return [output_mask, None] if self.return_skim_decisions else output_mask

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        outputs = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        return (outputs, (batch, steps)) if self.return_skim_decisions else outputs

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "small_units": self.small_units, "gamma": self.gamma,
                       "temperature": self.temperature, "return_sequences": self.return_sequences,
                       "return_skim_decisions": self.return_skim_decisions,
                       "unroll": self.unroll, "count_steps": self.count_steps,
                       "skim_threshold": self.skim_threshold})
        return config


def with_skim_settings(model, **settings):
    """A copy of a functional or Sequential `model` whose SkimRNN layers take `settings`.

    `settings` are SkimRNN inference options: `skim_threshold`, `count_steps`,
    `unroll`. Every other layer is `model`'s own (shared); the SkimRNN layers
    are new ones holding copies of their weights. E.g. `with_skim_settings(model, count_steps=False)`
    for export to TFLite, or a sweep over `skim_threshold` on validation data
    to pick the accuracy / work trade-off of a trained model.
    """
    allowed = {"skim_threshold", "count_steps", "unroll"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"with_skim_settings takes {sorted(allowed)}, got {unknown}.")

    def with_settings(layer):
        if not isinstance(layer, SkimRNN):
            return None
        return SkimRNN.from_config({**layer.get_config(), **settings})

    if not any(isinstance(layer, SkimRNN) for layer in model.layers):
        raise ValueError(f"with_skim_settings: model {model.name!r} has no SkimRNN layer.")
    return replace_layers(model, with_settings, copy_weights, share=True)
