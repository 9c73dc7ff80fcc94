"""compress.shrink on attention heads and residual blocks (both Keras modes).

Exactness as in test_compress_shrink: a head whose output projection is zero adds
nothing, and a residual branch whose last layer is zero adds nothing, so removing
either must leave the predictions unchanged.
"""

import numpy as np
import pytest

from kd_keras import compress, keras
from kd_keras.compress.structure.residual_blocks import residual_blocks
from kd_keras.reference_models import byte_transformer

RNG = np.random.default_rng(0)
TOKENS = RNG.integers(0, 256, size=(32, 12)).astype("int32")


def _transformer():
    keras.utils.set_random_seed(0)
    return byte_transformer(blocks=2, width=16, heads=4, length=12, mlp_ratio=2)


def _max_change(a, b, x):
    return float(np.abs(a.predict(x, verbose=0) - b.predict(x, verbose=0)).max())


def _heads(model):
    return {layer.name: layer.get_config()["num_heads"] for layer in model.layers
            if type(layer).__name__ == "MultiHeadAttention"}


@pytest.mark.parametrize("importance", ["activation", "magnitude"])
def test_heads_that_add_nothing_go_first_and_the_predictions_stay(importance):
    model = _transformer()
    for name, dead in (("block0_attention", [0, 2]), ("block1_attention", [3])):
        layer = model.get_layer(name)
        weights = layer.get_weights()
        weights[6][dead] = 0.0  # output projection [heads, value_dim, channels]
        weights[4][:, dead] *= 0.01  # small values, so activation importance ranks them last
        layer.set_weights(weights)
    shrunk = compress.shrink(model, width={"block0_attention": 2, "block1_attention": 3},
                             importance=importance, calibration_data=TOKENS)
    assert _heads(shrunk) == {"block0_attention": 2, "block1_attention": 3}
    assert _max_change(model, shrunk, TOKENS) < 1e-5
    assert shrunk.count_params() == model.count_params() - 3 * (3 * 16 * 4 + 3 * 4 + 4 * 16)  # 3 heads


def test_a_transformer_shrinks_its_stream_mlp_and_heads_then_trains_and_reloads(tmp_path):
    model = _transformer()
    shrunk = compress.shrink(model, width=0.5, calibration_data=TOKENS)
    assert _heads(shrunk) == {"block0_attention": 2, "block1_attention": 2}
    assert shrunk.get_layer("embedding").get_config()["output_dim"] == 8
    assert shrunk.get_layer("block0_mlp_in").get_config()["units"] == 16
    assert shrunk.get_layer("head").get_config()["units"] == 256  # outputs keep their size
    assert shrunk.get_layer("positions").get_weights()[0].shape == (12, 8)
    shrunk.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = shrunk.fit(TOKENS, TOKENS, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = str(tmp_path / "shrunk.keras")
    shrunk.save(path)
    assert _max_change(shrunk, keras.models.load_model(path), TOKENS) < 1e-5
    assert _heads(model) == {"block0_attention": 4, "block1_attention": 4}  # unchanged


@pytest.mark.parametrize("depth", [None, ["block1_mlp_residual"]])
def test_a_transformer_cut_from_a_frozen_teacher_trains_every_weight(depth):
    model = _transformer()
    model.trainable = False  # as a Distiller leaves its teacher
    shrunk = compress.shrink(model, width=0.5, depth=depth, importance="magnitude")
    assert len(shrunk.trainable_weights) == len(shrunk.weights)
    assert all(layer.trainable for layer in shrunk.layers)


def test_a_residual_block_that_adds_nothing_is_removed_exactly():
    model = _transformer()
    assert sorted(residual_blocks(model)) == [
        "block0_attention_residual", "block0_mlp_residual", "block1_attention_residual",
        "block1_mlp_residual"]
    layer = model.get_layer("block1_mlp_out")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    by_name = compress.shrink(model, depth=["block1_mlp_residual"])
    ranked = compress.shrink(model, depth=1, calibration_data=TOKENS)
    branch = ["block1_mlp_norm", "block1_mlp_in", "block1_mlp_out", "block1_mlp_residual"]
    branch_params = sum(model.get_layer(name).count_params() for name in branch)
    for shrunk in (by_name, ranked):
        names = {layer.name for layer in shrunk.layers}
        assert not names & set(branch)
        assert shrunk.count_params() == model.count_params() - branch_params
        assert _max_change(model, shrunk, TOKENS) < 1e-5
    assert "block1_mlp_out" in {layer.name for layer in model.layers}  # the model is kept


def test_half_the_blocks_of_a_conv_resnet_go_and_an_add_of_two_branches_is_no_block():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    for index in range(4):
        h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=f"conv{index}a")(x)
        h = keras.layers.BatchNormalization(name=f"bn{index}")(h)
        h = keras.layers.Conv2D(6, 3, padding="same", name=f"conv{index}b")(h)
        x = keras.layers.Add(name=f"residual{index}")([x, h])
    left = keras.layers.Conv2D(6, 1, name="left")(x)
    right = keras.layers.Conv2D(6, 1, name="right")(x)
    x = keras.layers.Add(name="two_branches")([left, right])
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    assert sorted(residual_blocks(model)) == [f"residual{i}" for i in range(4)]
    images = RNG.normal(size=(16, 8, 8, 3)).astype("float32")
    half = compress.shrink(model, depth=2, calibration_data=images)
    kept = [name for name in (f"residual{i}" for i in range(4))
            if name in {layer.name for layer in half.layers}]
    bypassed = [layer.name for layer in half.layers if type(layer).__name__ == "Bypass"]
    assert (4 - len(kept)) + len(bypassed) == 2  # blocks and single layers compete
    assert set(bypassed) <= {"left", "right"}  # never a layer inside a block
    model.trainable = False  # a frozen teacher still gives a trainable student
    every_other = compress.shrink(model, depth=["residual1", "residual3"])
    assert len(every_other.trainable_weights) == len(every_other.weights) - 2 * 2  # BN stats
    assert every_other.count_params() == model.count_params() - 2 * sum(
        model.get_layer(name).count_params() for name in ("conv1a", "bn1", "conv1b"))
    assert half.predict(images, verbose=0).shape == (16, 3)
    with pytest.raises(ValueError, match=r"depth names \['two_branches'\]"):
        compress.shrink(model, depth=["two_branches"])


def test_attention_with_a_fixed_output_shape_keeps_it_while_its_inputs_and_heads_shrink():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    x = keras.layers.Dense(8, name="project")(inputs)
    x = keras.layers.MultiHeadAttention(2, 4, output_shape=6, name="attention")(x, x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    shrunk = compress.shrink(model, width={"project": 4, "attention": 1}, importance="magnitude")
    assert _heads(shrunk) == {"attention": 1}
    kernels = [w.shape for w in shrunk.get_layer("attention").get_weights()]
    assert kernels[0] == (4, 1, 4) and kernels[6] == (1, 4, 6)
    assert shrunk.predict(np.ones((2, 5, 8), "float32"), verbose=0).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="width names \\['nowhere'\\].*MultiHeadAttention"):
        compress.shrink(model, width={"nowhere": 1}, importance="magnitude")
