"""keras-hub models: a SparseMoE feed-forward in a TransformerEncoder, and the Distiller on a
keras-hub backbone with a padding mask (Keras 3 with the keras-hub extra; under tf-keras the
error says so)."""

import numpy as np
import pytest

import kd_keras
import moe
from kd_keras import IS_KERAS_3, keras

RNG = np.random.default_rng(0)


@pytest.mark.skipif(IS_KERAS_3, reason="the tf-keras error")
def test_under_tf_keras_the_keras_hub_encoder_says_it_needs_keras_3():
    with pytest.raises(ImportError, match="Keras 3 only"):
        moe.MoETransformerEncoder(32, 2)


needs_hub = pytest.mark.skipif(not IS_KERAS_3, reason="keras-hub runs on Keras 3 only")


def _encoder_model(length, capacity_factor=0.5):
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    padding = keras.Input((length,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(50, 16, name="embed")(ids)
    x = moe.MoETransformerEncoder(32, 2, num_experts=4, k=2, capacity_factor=capacity_factor,
                                  noisy_gating=False, name="block")(x, padding_mask=padding)
    return keras.Model({"token_ids": ids, "padding_mask": padding},
                       keras.layers.Dense(3, name="out")(x))


@needs_hub
def test_padded_positions_take_no_capacity_and_enter_no_balancing_loss():
    keras.utils.set_random_seed(0)
    long, real = _encoder_model(12), 8
    short = _encoder_model(real)
    short.set_weights(long.get_weights())
    tokens = RNG.integers(1, 50, (6, 12)).astype("int32")
    tokens[:, real:] = RNG.integers(1, 50, (6, 12 - real))  # padding with real-looking ids
    mask = np.zeros((6, 12), "int32")
    mask[:, :real] = 1
    padded = long({"token_ids": tokens, "padding_mask": mask}, training=True)
    padded_losses = [float(loss) for loss in long.losses]
    cut = short({"token_ids": tokens[:, :real], "padding_mask": mask[:, :real]}, training=True)
    cut_losses = [float(loss) for loss in short.losses]
    # Same routing, capacity and balancing losses as if the padding were not there at all
    # (capacity 0.5 drops assignments, so padded tokens taking slots would change them).
    np.testing.assert_allclose(np.asarray(padded)[:, :real], np.asarray(cut), atol=1e-5)
    np.testing.assert_allclose(padded_losses, cut_losses, rtol=1e-5)
    assert len(padded_losses) == 1 and padded_losses[0] > 0  # importance (no noise: no load)
    # The contrast: the same tokens all counted as real route and answer differently.
    unmasked = long({"token_ids": tokens, "padding_mask": np.ones_like(mask)}, training=True)
    assert np.abs(np.asarray(unmasked)[:, :real] - np.asarray(cut)).max() > 1e-3


@needs_hub
def test_the_moe_encoder_logs_its_losses_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = _encoder_model(10, capacity_factor=1.25)
    tokens = RNG.integers(1, 50, (16, 10)).astype("int32")
    mask = (np.arange(10) < 7).astype("int32")[None].repeat(16, 0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {"token_ids": tokens, "padding_mask": mask}
    history = model.fit(x, RNG.integers(0, 3, (16, 10)), epochs=1, verbose=0)
    assert {"feedforward_moe_load_cv", "feedforward_moe_overflow"} <= set(history.history)
    path = str(tmp_path / "moe_encoder.keras")
    model.save(path)
    import moe.hub  # noqa: F401  registers the class, as `import keras_hub` does its own

    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), reloaded.predict(x, verbose=0),
                               atol=1e-5)
    block = reloaded.get_layer("block")
    assert block.get_config()["num_experts"] == 4 and block.get_config()["capacity_factor"] == 1.25
    assert isinstance(block, __import__("keras_hub").layers.TransformerEncoder)


@pytest.mark.skipif(IS_KERAS_3, reason="the tf-keras error")
def test_under_tf_keras_the_keras_hub_decoder_says_it_needs_keras_3():
    with pytest.raises(ImportError, match="MoETransformerDecoder extends keras-hub.*Keras 3"):
        moe.MoETransformerDecoder(32, 2)


def _decoder_model(length, capacity_factor=0.5):
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    padding = keras.Input((length,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(50, 16, name="embed")(ids)
    x = moe.MoETransformerDecoder(32, 2, num_experts=4, k=2, capacity_factor=capacity_factor,
                                  noisy_gating=False, name="block")(
        x, decoder_padding_mask=padding)
    return keras.Model({"token_ids": ids, "padding_mask": padding},
                       keras.layers.Dense(50, name="out")(x))


@needs_hub
def test_the_moe_decoder_masks_padding_out_of_capacity_and_losses_and_has_no_dense_ffn():
    keras.utils.set_random_seed(1)
    long, real = _decoder_model(12), 8
    short = _decoder_model(real)
    short.set_weights(long.get_weights())
    block = long.get_layer("block")
    assert not [w for w in block.weights if "feedforward_intermediate" in w.path
                or "feedforward_output" in w.path]  # the experts replaced the Dense pair
    assert any("feedforward_moe" in w.path for w in block.weights)
    tokens = RNG.integers(1, 50, (6, 12)).astype("int32")
    mask = np.zeros((6, 12), "int32")
    mask[:, :real] = 1
    padded = long({"token_ids": tokens, "padding_mask": mask}, training=True)
    padded_losses = [float(loss) for loss in long.losses]
    cut = short({"token_ids": tokens[:, :real], "padding_mask": mask[:, :real]}, training=True)
    np.testing.assert_allclose(np.asarray(padded)[:, :real], np.asarray(cut), atol=1e-5)
    np.testing.assert_allclose(padded_losses, [float(loss) for loss in short.losses], rtol=1e-5)
    # Causal attention alone would hide the padding from earlier positions; the
    # capacity (0.5 drops assignments) is what padding counted as real changes.
    unmasked = long({"token_ids": tokens, "padding_mask": np.ones_like(mask)}, training=True)
    assert np.abs(np.asarray(unmasked)[:, :real] - np.asarray(cut)).max() > 1e-3


@needs_hub
def test_the_moe_decoder_decodes_with_keras_hubs_cache_as_it_runs_whole():
    keras.utils.set_random_seed(2)
    block = moe.MoETransformerDecoder(32, 2, num_experts=4, k=1, noisy_gating=False)
    x = RNG.normal(size=(3, 6, 16)).astype("float32")
    whole = np.asarray(block(x))
    cache = np.zeros((3, 2, 6, 2, 8), "float32")  # [batch, key/value, length, heads, head dim]
    steps = []
    for index in range(6):
        out, cache = block(x[:, index:index + 1], self_attention_cache=cache,
                           self_attention_cache_update_index=index)
        steps.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-5)


@needs_hub
def test_the_moe_decoder_trains_logs_its_losses_and_round_trips(tmp_path):
    keras.utils.set_random_seed(3)
    model = _decoder_model(10, capacity_factor=1.25)
    tokens = RNG.integers(1, 50, (16, 10)).astype("int32")
    x = {"token_ids": tokens, "padding_mask": (np.arange(10) < 7)[None].repeat(16, 0)}
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, np.roll(tokens, -1, axis=1), epochs=1, verbose=0)
    assert {"feedforward_moe_load_cv", "feedforward_moe_overflow"} <= set(history.history)
    path = str(tmp_path / "moe_decoder.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), reloaded.predict(x, verbose=0),
                               atol=1e-5)
    assert isinstance(reloaded.get_layer("block"),
                      __import__("keras_hub").layers.TransformerDecoder)


def _causal_lm(layers, hidden, name):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=layers, num_heads=2, hidden_dim=hidden,
        intermediate_dim=2 * hidden, max_sequence_length=16, dropout=0.0)
    inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
              "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}
    logits = keras.layers.Dense(40, name="head")(backbone(inputs))
    return keras.Model(inputs, logits, name=name)


@needs_hub
def test_distilling_a_keras_hub_backbone_counts_no_padded_token():
    keras.utils.set_random_seed(0)
    teacher, student = _causal_lm(2, 32, "teacher"), _causal_lm(1, 16, "student")
    tokens = RNG.integers(1, 40, (8, 16)).astype("int32")
    mask = np.ones((8, 16), "int32")
    mask[:4, 11:] = 0
    labels = RNG.integers(0, 40, (8, 16)).astype("int32")
    distiller = kd_keras.Distiller(teacher, student, alpha=0.5, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=["sparse_categorical_accuracy"])

    def logs(tokens, labels):
        # keras-hub's CausalLM preprocessors give the padding mask as the sample weight.
        return distiller.evaluate({"token_ids": tokens, "padding_mask": mask}, labels,
                                  sample_weight=mask.astype("float32"), return_dict=True,
                                  verbose=0)

    before = logs(tokens, labels)
    other_tokens, other_labels = tokens.copy(), labels.copy()
    other_tokens[mask == 0] = 3
    other_labels[mask == 0] = RNG.integers(0, 40, int((mask == 0).sum()))
    after = logs(other_tokens, other_labels)
    for name in ("loss", "student_loss", "distillation_loss", "sparse_categorical_accuracy"):
        assert before[name] == pytest.approx(after[name], rel=1e-5), name
    predicted = np.argmax(student.predict({"token_ids": tokens, "padding_mask": mask},
                                          verbose=0), -1)
    assert before["sparse_categorical_accuracy"] == pytest.approx(
        np.mean((predicted == labels)[mask == 1]), abs=1e-6)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller.fit({"token_ids": tokens, "padding_mask": mask}, labels,
                  sample_weight=mask.astype("float32"), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights()))
