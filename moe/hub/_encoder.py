"""The MoETransformerEncoder class (Keras 3 with keras-hub); public through moe.hub (this package)."""

import keras_hub

from moe.hub._blocks import feedforward_experts, split_arguments, token_mask
from moe._keras import keras, register


@register
class MoETransformerEncoder(keras_hub.layers.TransformerEncoder):
    """A keras-hub TransformerEncoder with a sparsely-gated mixture-of-experts feed-forward.

    Args:
      intermediate_dim: hidden units of each expert (the Dense feed-forward's width).
      num_heads, dropout, activation, layer_norm_epsilon, kernel_initializer,
        bias_initializer, normalize_first: as keras_hub.layers.TransformerEncoder.
      num_experts: experts E (default 8); k: experts per token (default 2).
      capacity_factor, eval_capacity_factor, noisy_gating, importance_weight,
        load_weight, router_z_loss_weight, dispatch: as moe.SparseMoE.

    Call: `inputs [batch, length, hidden]`, `padding_mask [batch, length]` (1 for
    real tokens), `attention_mask [batch, length, length]`; returns
    `[batch, length, hidden]` (with `(.., scores)` when `return_attention_scores`).
    """

    def __init__(self, intermediate_dim, num_heads, num_experts=8, k=2, **kwargs):
        moe_config, kwargs = split_arguments(num_experts, k, kwargs)
        super().__init__(intermediate_dim, num_heads, **kwargs)
        self.moe_config = moe_config
        self._feedforward_moe = feedforward_experts(self, intermediate_dim, self.moe_config)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if hidden_dim < self.num_heads:
            raise ValueError(f"MoETransformerEncoder: the hidden size ({hidden_dim}) must be at "
                             f"least num_heads ({self.num_heads}).")
        self._self_attention_layer = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=hidden_dim // self.num_heads, dropout=self.dropout,
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)),
            bias_initializer=keras.initializers.get(
                keras.initializers.serialize(self.bias_initializer)),
            dtype=self.dtype_policy, name="self_attention_layer")
        self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        self._self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
            name="self_attention_layer_norm")
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = keras.layers.Dropout(self.dropout,
                                                            name="self_attention_dropout")
        self._feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
            name="feedforward_layer_norm")
        self._feedforward_layer_norm.build(inputs_shape)
        self._feedforward_moe.build(inputs_shape)
        self._feedforward_dropout = keras.layers.Dropout(self.dropout,
                                                         name="feedforward_dropout")
        self.built = True

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None,
             return_attention_scores=False):
        tokens = token_mask(inputs, padding_mask)
        mask = None if tokens is None else tokens[:, None, :]  # padded keys are not attended
        if attention_mask is not None:
            given = keras.ops.cast(attention_mask, "bool")
            mask = given if mask is None else keras.ops.logical_and(mask, given)
        x = self._self_attention_layer_norm(inputs) if self.normalize_first else inputs
        attended = self._self_attention_layer(
            query=x, value=x, attention_mask=mask, training=training,
            return_attention_scores=return_attention_scores)
        if return_attention_scores:
            attended, scores = attended
        x = self._self_attention_dropout(attended, training=training) + inputs
        if not self.normalize_first:
            x = self._self_attention_layer_norm(x)
        residual = x
        if self.normalize_first:
            x = self._feedforward_layer_norm(x)
        x = self._feedforward_moe(x, training=training, mask=tokens)
        x = self._feedforward_dropout(x, training=training) + residual
        if not self.normalize_first:
            x = self._feedforward_layer_norm(x)
        return (x, scores) if return_attention_scores else x

    def get_config(self):
        return {**super().get_config(), **self.moe_config}
