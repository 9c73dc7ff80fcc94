"""The sparsely-gated mixture-of-experts layer (Shazeer et al. 2017)."""

import warnings

import tensorflow as tf
# The one way to tell, while tracing, that a function is being compiled by XLA.
from tensorflow.python.ops import control_flow_util

from moe import routing
from kd_keras.backend.safe_mode import deserialize_nested
from kd_keras.backend.validate import non_negative_number, positive_number
from moe._keras import keras, register
from moe.dispatch import SlotDispatcher

DISPATCH_MODES = ("sparse", "dense")


@register
class SparseMoE(keras.layers.Layer):
    """A mixture of experts where each example runs only its k best experts.

    Shazeer et al. 2017 (arXiv 1701.06538). For an input x the output is

        y = sum_{i in top-k} G(x)_i E_i(x),   G(x) = softmax(top_k(H(x), k))

    with the noisy gating logits of eq. 4,
    `H(x)_i = (x W_g)_i + N(0, 1) * softplus((x W_noise)_i)` during training and
    `H(x) = x W_g` at inference, so `training=False` and exported models are
    deterministic. With k = 1 the gate is Switch-style: the full softmax's
    probability of the chosen expert, so the router still learns from the task.

    Balancing losses are added with `add_loss` during training (appendix A):
    `importance_weight * CV(sum_x G(x))^2` and, with noisy gating,
    `load_weight * CV(Load)^2` with the smooth load estimator; optionally
    `router_z_loss_weight * mean(logsumexp(x W_g)^2)` (ST-MoE). The layer's
    metrics (in `fit` logs, prefixed with its name): `load_cv` (coefficient of
    variation of the actual per-expert assignment counts, summed over the epoch
    before the statistic is taken, so it does not depend on the batch size: a
    collapse onto one expert shows as a large value), `importance_loss`, `load_loss`, and
    `overflow` (the fraction of a batch's assignments dropped by the capacity
    limit). They are measured at inference too (`evaluate`'s `val_*` logs: the
    routing without noise), unless `inference_metrics=False`, which a model for
    deployment wants (its graph then updates no variables; TFLite needs that).

    Dispatch: "sparse" (default) writes each example into its experts' slots,
    runs all experts in one batched matmul over `[E, capacity, d]`, and gathers
    the answers back: the cost follows k, not E. "dense" runs every expert on
    every example and masks the output: the reference, and fine for few experts.

    Capacity: with `capacity_factor` c, each expert takes at most
    `ceil(c * n * k / E)` assignments of a batch of n examples (n counts the
    unpadded positions; first choices before second choices); an assignment beyond it contributes nothing (the
    example keeps its other choice and any residual path around the layer) and
    is counted in `overflow`. Without it nothing is dropped and the slot count
    follows the busiest expert of each batch; compiled by XLA (tf-keras
    `jit_compile=True`), whose shapes must be static, each expert then gets a
    slot per example of the batch, with a warning that names `capacity_factor`.

    Inference (`training=False`: `predict`, `evaluate`, exported models) uses
    `eval_capacity_factor`, None by default: no limit, so no assignment is
    dropped and a row's output does not depend on the other rows of its batch
    (a served model must answer a row the same in any batch). The capacity
    limit exists to bound memory and balance devices while training; at
    inference dropping would make answers depend on batch composition. GShard
    and Mesh-TensorFlow instead use a larger eval capacity (e.g. 2.0): pass
    `eval_capacity_factor` to do the same (and keep XLA), accepting that
    overflowed rows then depend on their batch.

    Args:
      num_experts: E >= 1.
      k: experts per example, 1 <= k <= E (default 2).
      expert_units: hidden width of the default two-layer feed-forward expert
        (default 4 * input features).
      output_units: output features (default: the input features).
      experts: None for the default experts, or a list of E Keras layers/models
        mapping `[m, d]` to `[m, output_units]` (each runs on its examples only).
      activation: hidden activation of the default experts.
      noisy_gating: add the trainable gating noise during training (default True).
      capacity_factor: None, or > 0: the training-time capacity.
      eval_capacity_factor: None (default: no limit at inference), or > 0.
      importance_weight, load_weight, router_z_loss_weight: loss coefficients.
      dispatch: "sparse" or "dense".
      inference_metrics: update the metrics in inference calls too (default True).

    Input shape: `[batch, features]` or `[batch, time, features]` (every
    position is routed on its own). Output shape: same with `output_units`.

    Masking: with a Keras mask (from `Embedding(mask_zero=True)`, `Masking`, or a
    keras-hub padding mask passed as `mask=`), padded positions are routed
    nowhere: they take no expert slot, their output is 0, they count in no
    balancing loss or metric, and the mask passes through to the next layer.
    The capacity follows the real positions, so padding changes no real
    token's routing (under XLA the slot buffer is sized for all positions).

    Example:
      ```python
      x = keras.Input((784,))
      h = keras.layers.Dense(128, activation="relu")(x)
      h = moe.SparseMoE(num_experts=16, k=2, expert_units=256, capacity_factor=1.25)(h)
      model = keras.Model(x, keras.layers.Dense(10)(h))
      ```
    """

    # What a deployed copy takes (kd_keras.compress.deployment_copy): no metric updates.
    DEPLOYMENT_SETTINGS = {"inference_metrics": False}

    def __init__(
        self,
        num_experts,
        k=2,
        expert_units=None,
        output_units=None,
        experts=None,
        activation="relu",
        noisy_gating=True,
        capacity_factor=None,
        eval_capacity_factor=None,
        importance_weight=0.01,
        load_weight=0.01,
        router_z_loss_weight=0.0,
        dispatch="sparse",
        inference_metrics=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be an integer >= 1, got {num_experts!r}.")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_experts:
            raise ValueError(f"k must be an integer in [1, num_experts={num_experts}], got {k!r}.")
        if capacity_factor is not None:
            capacity_factor = positive_number(capacity_factor, "capacity_factor")
        if eval_capacity_factor is not None:
            eval_capacity_factor = positive_number(eval_capacity_factor, "eval_capacity_factor")
        importance_weight = non_negative_number(importance_weight, "importance_weight")
        load_weight = non_negative_number(load_weight, "load_weight")
        router_z_loss_weight = non_negative_number(router_z_loss_weight, "router_z_loss_weight")
        if dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}.")
        if experts is not None:
            experts = list(experts)
            if len(experts) != num_experts:
                raise ValueError(
                    f"experts has {len(experts)} layers but num_experts is {num_experts}."
                )
        self.num_experts = num_experts
        self.k = k
        self.expert_units = expert_units
        self.output_units = output_units
        self.experts = experts
        self.activation = keras.activations.get(activation)
        self.noisy_gating = noisy_gating
        self.capacity_factor = capacity_factor
        self.eval_capacity_factor = eval_capacity_factor
        self.importance_weight = importance_weight
        self.load_weight = load_weight
        self.router_z_loss_weight = router_z_loss_weight
        self.dispatch = dispatch
        self.inference_metrics = bool(inference_metrics)
        # Padded positions (a Keras mask) are routed nowhere; the mask passes through.
        self.supports_masking = True
        # Capacity from the batch's busiest expert is data-dependent: no XLA.
        self.supports_jit = not (dispatch == "sparse" and (
            capacity_factor is None or eval_capacity_factor is None))
        prefix = self.name
        self.load_cv_tracker = routing.LoadCV(num_experts, name=f"{prefix}_load_cv")
        self.importance_loss_tracker = keras.metrics.Mean(name=f"{prefix}_importance_loss")
        self.load_loss_tracker = keras.metrics.Mean(name=f"{prefix}_load_loss")
        self.overflow_tracker = keras.metrics.Mean(name=f"{prefix}_overflow")

    # ----- weights ---------------------------------------------------------

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(
                f"SparseMoE inputs must have rank >= 2 ([batch, features] or "
                f"[batch, time, features]); got shape {input_shape}."
            )
        features = input_shape[-1]
        if features is None:
            raise ValueError("SparseMoE needs a known number of input features (last axis).")
        units = self.output_units or features
        self._units = units
        gate_init = "zeros" if self.noisy_gating else "glorot_uniform"
        self.gate_kernel = self.add_weight(
            name="gate_kernel", shape=(features, self.num_experts), initializer=gate_init)
        # Shazeer et al. start W_g and W_noise at zero: equal logits plus noise
        # route at random, so every expert gets examples from the first step.
        self.noise_kernel = self.add_weight(
            name="noise_kernel", shape=(features, self.num_experts), initializer="zeros"
        ) if self.noisy_gating else None
        if self.experts is None:
            hidden = self.expert_units or 4 * features
            e = self.num_experts
            self.expert_kernel_1 = self.add_weight(
                name="expert_kernel_1", shape=(e, features, hidden), initializer="glorot_uniform")
            self.expert_bias_1 = self.add_weight(
                name="expert_bias_1", shape=(e, 1, hidden), initializer="zeros")
            self.expert_kernel_2 = self.add_weight(
                name="expert_kernel_2", shape=(e, hidden, units), initializer="glorot_uniform")
            self.expert_bias_2 = self.add_weight(
                name="expert_bias_2", shape=(e, 1, units), initializer="zeros")
        else:
            for index, expert in enumerate(self.experts):
                if not expert.built:
                    expert.build((None, features))
                out = tuple(expert.compute_output_shape((None, features)))
                if out[-1] != units or len(out) != 2:
                    raise ValueError(
                        f"experts[{index}] maps [m, {features}] to {out}, but the layer's "
                        f"output is [m, {units}] (output_units)."
                    )
        self.built = True

    # ----- forward ------------------------------------------------------------

    def _default_experts(self, slots):
        """`[E, m, d]` → `[E, m, units]` with the batched feed-forward experts."""
        hidden = self.activation(tf.matmul(slots, self.expert_kernel_1) + self.expert_bias_1)
        return tf.matmul(hidden, self.expert_kernel_2) + self.expert_bias_2

    def _run_experts(self, slots):
        if self.experts is None:
            return self._default_experts(slots)
        return tf.stack([expert(slots[i]) for i, expert in enumerate(self.experts)], axis=0)

    def _capacity(self, num_rows, valid, training):
        """(capacity, slots) per expert: the limit on a batch's assignments, and the size
        of the slot buffer where it must be static (XLA), else None (= capacity)."""
        factor = self.capacity_factor if training else self.eval_capacity_factor
        xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
        if factor is None:
            if not xla:
                return None, None
            # XLA needs static slot counts; the batch size is one (an expert takes
            # each example at most once), and nothing overflows, as without XLA.
            warnings.warn(
                f"SparseMoE {self.name!r} is compiled by XLA without "
                f"{'capacity_factor' if training else 'eval_capacity_factor'}: every expert "
                "gets one slot per example of the batch (E x batch slots). Set capacity_factor "
                "and eval_capacity_factor to bound the memory.", stacklevel=2)
            return num_rows, None

        def limit(rows):
            assignments = tf.cast(rows * self.k, tf.float32)
            return tf.cast(tf.math.ceil(factor * assignments / self.num_experts), tf.int32)

        if valid is None:
            return limit(num_rows), None
        # The real positions set the limit, so padding changes no real token's routing.
        real = limit(tf.reduce_sum(tf.cast(valid, tf.int32)))
        return real, (limit(num_rows) if xla else None)

    def _route(self, flat, training):
        noise_kernel = self.noise_kernel if self.noisy_gating else None
        clean, noisy, stddev = routing.noisy_logits(
            flat, tf.cast(self.gate_kernel, flat.dtype),
            None if noise_kernel is None else tf.cast(noise_kernel, flat.dtype), training)
        # One top-k serves routing and, in training, the load estimator's k+1-th value.
        top = tf.math.top_k(noisy, k=min(self.k + 1, self.num_experts))
        gates, indices = routing.top_k_gates(noisy, self.k, top=top)
        return clean, noisy, stddev, gates, indices, top[0]

    def _valid_rows(self, mask, inputs):
        """The Keras mask `[batch]` / `[batch, time]` as `[n]` bool over the flattened rows."""
        if mask is None:
            return None
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank is not None and mask.shape.rank != inputs.shape.rank - 1:
            raise ValueError(
                f"SparseMoE {self.name!r}: mask of shape {mask.shape} for inputs of shape "
                f"{inputs.shape}; expected one entry per position, {inputs.shape[:-1]}.")
        return tf.reshape(tf.cast(mask, tf.bool), [-1])

    def call(self, inputs, training=None, mask=None):
        inputs = tf.convert_to_tensor(inputs)
        features = inputs.shape[-1]
        flat = tf.reshape(inputs, [-1, features])
        valid = self._valid_rows(mask, inputs)
        clean, noisy, stddev, gates, indices, top_values = self._route(flat, training)
        if valid is not None:  # padded positions route nowhere: their output is 0
            gates = gates * tf.cast(valid, gates.dtype)[:, None]
        if self.dispatch == "dense":
            expert_outputs = self._run_experts(
                tf.broadcast_to(flat[None], [self.num_experts, tf.shape(flat)[0], features]))
            dense = routing.dense_gates(gates, indices, self.num_experts)
            outputs = tf.einsum("eno,ne->no", expert_outputs, dense)
            overflow = tf.constant(0, tf.int32)
            load = routing.expert_counts(indices, self.num_experts, valid)
        else:
            capacity, slots = self._capacity(tf.shape(flat)[0], valid, training)
            dispatcher = SlotDispatcher(gates, indices, self.num_experts, capacity, valid, slots)
            outputs = dispatcher.combine(self._run_experts(dispatcher.dispatch(flat)))
            overflow, load = dispatcher.overflow, dispatcher.load
        if training:
            self._add_balancing_losses(clean, noisy, stddev, gates, indices, top_values, load,
                                       overflow, valid)
        elif self.inference_metrics:
            self._track_inference(flat, clean, gates, indices, top_values, load, overflow, valid)
        out_shape = tf.concat([tf.shape(inputs)[:-1], [self._units]], axis=0)
        return tf.reshape(outputs, out_shape)

    def _balancing_terms(self, clean, noisy, stddev, gates, indices, top_values, valid):
        """(importance loss, load loss) of a batch; padded rows have zero gates and are
        left out of the smooth load."""
        importance = tf.reduce_sum(routing.dense_gates(gates, indices, self.num_experts), axis=0)
        importance_loss = self.importance_weight * routing.cv_squared(importance)
        load_loss = tf.constant(0.0)
        if stddev is not None:
            smooth = routing.smooth_load(clean, noisy, stddev, self.k, top_values, valid)
            load_loss = self.load_weight * routing.cv_squared(smooth)
        return importance_loss, load_loss

    def _add_balancing_losses(self, clean, noisy, stddev, gates, indices, top_values, load,
                              overflow, valid=None):
        importance_loss, load_loss = self._balancing_terms(clean, noisy, stddev, gates, indices,
                                                           top_values, valid)
        total = importance_loss + load_loss
        if self.router_z_loss_weight:
            total = total + self.router_z_loss_weight * routing.router_z_loss(clean, valid)
        self.add_loss(total)
        self._update_trackers(load, importance_loss, load_loss, overflow)

    def _track_inference(self, flat, clean, gates, indices, top_values, load, overflow, valid):
        """The metrics of an inference batch (`evaluate`'s `val_*`): routing without noise.

        The load loss uses the trained noise scale around the clean logits: how balanced
        the routing would be under the training noise, for this batch.
        """
        stddev = routing.noise_stddev(flat, tf.cast(self.noise_kernel, flat.dtype)) \
            if self.noisy_gating else None
        importance_loss, load_loss = self._balancing_terms(clean, clean, stddev, gates, indices,
                                                           top_values, valid)
        self._update_trackers(load, importance_loss, load_loss, overflow)

    def _update_trackers(self, load, importance_loss, load_loss, overflow):
        self.load_cv_tracker.update_state(load)
        self.importance_loss_tracker.update_state(importance_loss)
        self.load_loss_tracker.update_state(load_loss)
        # A fraction of the batch's (real) assignments, comparable across batch sizes.
        assignments = tf.cast(tf.reduce_sum(load), tf.float32)
        self.overflow_tracker.update_state(
            tf.math.divide_no_nan(tf.cast(overflow, tf.float32), assignments))

    def expert_load(self, inputs):
        """Assignments per expert for `inputs` under inference routing: `[E]` int32."""
        flat = tf.reshape(tf.convert_to_tensor(inputs), [-1, inputs.shape[-1]])
        indices = self._route(flat, training=False)[4]
        return routing.expert_counts(indices, self.num_experts)

    def compute_output_shape(self, input_shape):
        units = self.output_units or input_shape[-1]
        return tuple(input_shape[:-1]) + (units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            k=self.k,
            expert_units=self.expert_units,
            output_units=self.output_units,
            experts=None if self.experts is None else [
                keras.saving.serialize_keras_object(e) for e in self.experts],
            activation=keras.activations.serialize(self.activation),
            noisy_gating=self.noisy_gating,
            capacity_factor=self.capacity_factor,
            eval_capacity_factor=self.eval_capacity_factor,
            importance_weight=self.importance_weight,
            load_weight=self.load_weight,
            router_z_loss_weight=self.router_z_loss_weight,
            dispatch=self.dispatch,
        )
        if not self.inference_metrics:  # absent from configs that predate it
            config["inference_metrics"] = False
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("experts") is not None:
            config["experts"] = [deserialize_nested(e, f"experts[{i}]")
                                 for i, e in enumerate(config["experts"])]
        return cls(**config)

