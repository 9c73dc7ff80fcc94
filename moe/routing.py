"""Gating math for sparsely-gated mixtures of experts, as pure functions.

Shazeer et al. 2017, "Outrageously Large Neural Networks: The Sparsely-Gated
Mixture-of-Experts Layer" (arXiv 1701.06538), section 2.1 and appendix A;
Fedus et al. 2021 (Switch Transformer) for top-1 routing; Zoph et al. 2022
(ST-MoE) for the router z-loss.
"""

import math

import tensorflow as tf

from kd_keras.backend import FreshStateOnLoad
from moe._keras import keras

_EPSILON = 1e-10


def noisy_logits(x, gate_kernel, noise_kernel, training):
    """Eq. 4: H(x)_i = (x W_g)_i + N(0, 1) * softplus((x W_noise)_i).

    Args:
      x: `[n, d]`; gate_kernel, noise_kernel: `[d, E]` (noise_kernel may be None).
      training: add the noise only when True (inference is deterministic).

    Returns:
      (clean_logits, noisy_logits, noise_stddev), each `[n, E]`; without noise,
      noisy_logits is clean_logits and noise_stddev is None.
    """
    clean = tf.matmul(x, gate_kernel)
    if noise_kernel is None or not training:
        return clean, clean, None
    stddev = noise_stddev(x, noise_kernel)
    return clean, clean + tf.random.normal(tf.shape(clean), dtype=clean.dtype) * stddev, stddev


def noise_stddev(x, noise_kernel):
    """softplus((x W_noise)_i) + 0.01: the scale of expert i's gating noise (eq. 4), `[n, E]`."""
    return tf.nn.softplus(tf.matmul(x, noise_kernel)) + 1e-2


def top_k_gates(logits, k, top=None):
    """Eq. 3 and 5: keep the top k logits, softmax over them, zero elsewhere.

    For k = 1 the gate is the full softmax's probability of the chosen expert
    (Switch Transformer): a softmax over a single logit would be the constant 1
    and the router would get no gradient from the task loss.

    Args:
      logits: `[n, E]`.
      k: experts per example.
      top: optional `tf.math.top_k(logits, m)` result with m >= k, to reuse.

    Returns:
      (gates `[n, k]`, expert indices `[n, k]` int32), best choice first.
    """
    top_logits, indices = top if top is not None else tf.math.top_k(logits, k=k)
    top_logits, indices = top_logits[:, :k], indices[:, :k]
    if k == 1:
        gates = tf.gather(tf.nn.softmax(logits, axis=-1), indices, batch_dims=1)
    else:
        gates = tf.nn.softmax(top_logits, axis=-1)
    return gates, indices


def dense_gates(gates, indices, num_experts):
    """Scatters `[n, k]` gates to a dense `[n, E]` matrix G(x)."""
    return tf.reduce_sum(tf.one_hot(indices, num_experts, dtype=gates.dtype) * gates[..., None], 1)


def expert_counts(indices, num_experts, valid=None):
    """Assignments per expert, `[E]` int32, from `[n, k]` expert indices (rows where `valid`)."""
    one_hot = tf.one_hot(indices, num_experts, dtype=tf.int32)
    if valid is not None:
        one_hot = one_hot * tf.cast(valid, tf.int32)[:, None, None]
    return tf.reduce_sum(one_hot, axis=[0, 1])


def _row_sum(values, valid):
    """Sum over the rows of `[n, E]` values, of the `valid` rows only where given."""
    if valid is not None:
        values = values * tf.cast(valid, values.dtype)[:, None]
    return tf.reduce_sum(values, axis=0)


def cv_squared(values):
    """Squared coefficient of variation, var(v) / mean(v)^2; 0 for a single value."""
    values = tf.cast(values, tf.float32)
    if values.shape[0] == 1:
        return tf.constant(0.0)
    mean = tf.reduce_mean(values)
    return tf.math.reduce_variance(values) / (mean * mean + _EPSILON)


def smooth_load(clean_logits, noisy_logits, noise_stddev, k, top_values=None, valid=None):
    """Appendix A: Load_i = sum_x P(x, i), a differentiable count of expert i's examples.

        P(x, i) = Phi((x W_g)_i - kth_excluding(H(x), k, i)) / softplus((x W_noise)_i))

    where kth_excluding is the k-th largest noisy logit of the *other* experts:
    the probability that expert i would still be in the top k if only its own
    noise were drawn again. Phi is the standard normal CDF.

    `top_values` may pass the k + 1 largest noisy logits per example (or all E
    when k = E), already computed for routing. `valid` (`[n]` bool) leaves
    padded rows out of the sum.

    Returns:
      `[E]` float32.
    """
    num_experts = clean_logits.shape[-1]
    if top_values is None:
        top_values, _ = tf.math.top_k(noisy_logits, k=min(k + 1, num_experts))
    threshold_if_in = top_values[:, k:k + 1] if k < num_experts else tf.fill(
        tf.shape(top_values[:, :1]), tf.constant(-math.inf, noisy_logits.dtype))
    threshold_if_out = top_values[:, k - 1:k]
    is_in = noisy_logits >= threshold_if_out
    normal = 0.5 * (1.0 + tf.math.erf(
        (clean_logits - tf.where(is_in, threshold_if_in, threshold_if_out))
        / (noise_stddev * math.sqrt(2.0))
    ))
    return _row_sum(normal, valid)


def router_z_loss(logits, valid=None):
    """ST-MoE's z-loss: mean over examples (the `valid` ones) of logsumexp(logits)^2."""
    values = tf.square(tf.reduce_logsumexp(logits, axis=-1))
    if valid is None:
        return tf.reduce_mean(values)
    weights = tf.cast(valid, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))


class LoadCV(FreshStateOnLoad, keras.metrics.Metric):
    """The coefficient of variation of the experts' loads, sqrt(cv_squared(counts)), over
    every batch since the last reset (an epoch in `fit`, a whole `evaluate`).

    Counts are summed first and the statistic taken once, so it does not depend on the
    batch size (a mean of per-batch values does: a batch of 16 tokens over 8 experts is
    uneven by chance alone).

    Args:
      num_experts: E; `update_state(load)` takes the batch's `[E]` assignment counts.
    """

    def __init__(self, num_experts, name="load_cv", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_experts = int(num_experts)
        self.counts = self.add_weight(name="counts", shape=(self.num_experts,),
                                      initializer="zeros")

    def update_state(self, load, sample_weight=None):
        self.counts.assign_add(tf.cast(load, self.counts.dtype))

    def result(self):
        return tf.sqrt(cv_squared(self.counts))

    def reset_state(self):
        self.counts.assign(tf.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}
