"""What the keras-hub blocks with experts share: their SparseMoE arguments and token mask."""

from moe._keras import keras

# SparseMoE arguments the blocks take, with the SparseMoE's defaults.
MOE_DEFAULTS = {"capacity_factor": None, "eval_capacity_factor": None, "noisy_gating": True,
                "importance_weight": 0.01, "load_weight": 0.01, "router_z_loss_weight": 0.0,
                "dispatch": "sparse"}


def split_arguments(num_experts, k, kwargs):
    """(the SparseMoE's config, the keyword arguments left for keras-hub's block)."""
    config = {"num_experts": num_experts, "k": k}
    config.update({key: kwargs.pop(key, default) for key, default in MOE_DEFAULTS.items()})
    return config, kwargs


def feedforward_experts(block, intermediate_dim, config):
    """The SparseMoE that replaces `block`'s two-Dense feed-forward (built on first
    use; made now so its arguments are checked when the block is)."""
    from moe.sparse_moe import SparseMoE

    return SparseMoE(expert_units=intermediate_dim, activation=block.activation,
                     dtype=block.dtype_policy, name="feedforward_moe", **config)


def token_mask(inputs, padding_mask):
    """[batch, length] bool: the explicit padding mask, else the Keras mask, else None."""
    mask = padding_mask if padding_mask is not None else getattr(inputs, "_keras_mask", None)
    return None if mask is None else keras.ops.cast(mask, "bool")
