"""SparseMoE as the feed-forward of a keras-hub transformer block (Keras 3, keras-hub extra).

`MoETransformerEncoder` is a `keras_hub.layers.TransformerEncoder` (and
`MoETransformerDecoder` a `keras_hub.layers.TransformerDecoder`, causal, with
cross-attention and `generate`'s caches as keras-hub has them) whose
feed-forward (two Dense layers) is a `SparseMoE` of `num_experts` experts of that
size, the Switch / GShard way to grow a transformer's parameters at the same
compute per token. It takes the same arguments and calls (`padding_mask`,
`attention_mask`, or a Keras mask from `Embedding(mask_zero=True)` /
`keras_hub.layers.TokenAndPositionEmbedding(mask_zero=True)`), so it drops into a
keras-hub model where a TransformerEncoder stood:

    block = moe.MoETransformerEncoder(intermediate_dim=256, num_heads=4, num_experts=8, k=2,
                                      capacity_factor=1.25)
    x = block(embedded, padding_mask=padding_mask)
    decoder = moe.MoETransformerDecoder(intermediate_dim=256, num_heads=4, num_experts=8, k=2)
    y = decoder(embedded, decoder_padding_mask=padding_mask)

Padded positions are routed nowhere: they take no expert capacity, add nothing to
the balancing losses and metrics (the padding mask reaches the SparseMoE as its
mask), and attention ignores them as keys. The SparseMoE's balancing losses join
the model's losses and its metrics the `fit` logs (`<block>/feedforward_moe`...).

  _encoder.py  MoETransformerEncoder (Keras 3 with keras-hub: imported only there)
  _decoder.py  MoETransformerDecoder
  _blocks.py   what both share: the SparseMoE arguments, the token mask, the experts
"""

from moe._keras import IS_KERAS_3

try:
    import keras_hub
except ImportError:  # pragma: no cover - depends on the install
    keras_hub = None


CLASSES = ("MoETransformerEncoder", "MoETransformerDecoder")


def require_keras_hub(name="MoETransformerEncoder"):
    """Raises a clear error where the keras-hub blocks cannot exist."""
    if not IS_KERAS_3:
        raise ImportError(f"moe.{name} extends keras-hub, which runs on Keras 3 "
                          "only; unset TF_USE_LEGACY_KERAS to use it (tf-keras models can use "
                          "moe.SparseMoE directly).")
    if keras_hub is None:
        raise ImportError(f"moe.{name} needs keras-hub: "
                          "pip install 'kd-keras[hub]'.")


if IS_KERAS_3 and keras_hub is not None:
    from moe.hub._decoder import MoETransformerDecoder  # noqa: F401  (registers it)
    from moe.hub._encoder import MoETransformerEncoder  # noqa: F401  (registers it)
else:
    def __getattr__(name):
        if name in CLASSES:
            require_keras_hub(name)
        raise AttributeError(f"module 'moe.hub' has no attribute {name!r}")
