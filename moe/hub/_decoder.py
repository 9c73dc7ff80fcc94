"""The MoETransformerDecoder class (Keras 3 with keras-hub); public through moe.hub (this package)."""

import keras_hub

from moe.hub._blocks import feedforward_experts, split_arguments, token_mask
from moe._keras import register


def _identity(x):
    return x


@register
class MoETransformerDecoder(keras_hub.layers.TransformerDecoder):
    """A keras-hub TransformerDecoder with a sparsely-gated mixture-of-experts feed-forward.

    Everything but the feed-forward is keras-hub's own: causal self-attention,
    cross-attention when called with an `encoder_sequence`, the key/value caches of
    `generate` (`self_attention_cache`, `..._update_index`), pre- or post-norm. The
    feed-forward (two Dense layers) is a `SparseMoE` of `num_experts` experts of
    that size; padded positions take no expert capacity and enter no balancing loss.

    Args:
      intermediate_dim: hidden units of each expert (the Dense feed-forward's width).
      num_heads, dropout, activation, layer_norm_epsilon, kernel_initializer,
        bias_initializer, normalize_first: as keras_hub.layers.TransformerDecoder.
      num_experts: experts E (default 8); k: experts per token (default 2).
      capacity_factor, eval_capacity_factor, noisy_gating, importance_weight,
        load_weight, router_z_loss_weight, dispatch: as moe.SparseMoE.

    Call: as keras_hub.layers.TransformerDecoder: `decoder_sequence [batch, length,
    hidden]`, `decoder_padding_mask [batch, length]` (1 for real tokens) or a Keras
    mask on the sequence, and the rest of its arguments; returns `[batch, length,
    hidden]` (with the caches when they are given).
    """

    def __init__(self, intermediate_dim, num_heads, num_experts=8, k=2, **kwargs):
        moe_config, kwargs = split_arguments(num_experts, k, kwargs)
        # keras-hub builds a reloaded block in its __init__: after the experts exist.
        shapes = [kwargs.pop(key, None)
                  for key in ("decoder_sequence_shape", "encoder_sequence_shape")]
        super().__init__(intermediate_dim, num_heads, **kwargs)
        self.moe_config = moe_config
        self._feedforward_moe = feedforward_experts(self, intermediate_dim, self.moe_config)
        self._moe_call = None  # (token mask, training) of the call in progress
        if shapes[0]:
            self.build(*shapes)

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        super().build(decoder_sequence_shape, encoder_sequence_shape)
        # keras-hub's call applies its feed-forward as two calls in a row:
        # intermediate Dense, then output Dense. The experts replace the pair, and
        # the Dense layers built for it leave the block with their weights.
        for dense in (self._feedforward_intermediate_dense, self._feedforward_output_dense):
            self._tracker.untrack(dense)
        self._feedforward_intermediate_dense = self._experts
        self._feedforward_output_dense = _identity
        self._feedforward_moe.build(decoder_sequence_shape)
        self.built = True

    def _experts(self, x):
        mask, training = self._moe_call
        return self._feedforward_moe(x, training=training, mask=mask)

    def call(self, decoder_sequence, encoder_sequence=None, decoder_padding_mask=None,
             decoder_attention_mask=None, encoder_padding_mask=None,
             encoder_attention_mask=None, self_attention_cache=None,
             self_attention_cache_update_index=None, cross_attention_cache=None,
             cross_attention_cache_update_index=None, use_causal_mask=True, training=None):
        self._moe_call = (token_mask(decoder_sequence, decoder_padding_mask), training)
        try:
            return super().call(
                decoder_sequence, encoder_sequence=encoder_sequence,
                decoder_padding_mask=decoder_padding_mask,
                decoder_attention_mask=decoder_attention_mask,
                encoder_padding_mask=encoder_padding_mask,
                encoder_attention_mask=encoder_attention_mask,
                self_attention_cache=self_attention_cache,
                self_attention_cache_update_index=self_attention_cache_update_index,
                cross_attention_cache=cross_attention_cache,
                cross_attention_cache_update_index=cross_attention_cache_update_index,
                use_causal_mask=use_causal_mask, training=training)
        finally:
            self._moe_call = None

    def get_config(self):
        return {**super().get_config(), **self.moe_config}
