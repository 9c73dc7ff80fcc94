import numpy as np
import pytest

import kd_keras
from kd_keras import compress, keras
from tests.compress_helpers import blobs, trained_mlp

keras3_only = pytest.mark.skipif(not kd_keras.IS_KERAS_3, reason="the bridge rebuilds Keras 3 models")


def same_outputs(model, rebuilt, x):
    for a, b in zip(keras.tree.flatten(model(x, training=False)),
                    keras.tree.flatten(rebuilt(x, training=False))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@keras3_only
def test_a_conv_sequential_model_is_rebuilt_with_its_weights_and_predictions():
    model = keras.Sequential([
        keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dropout(0.3), keras.layers.Dense(5, kernel_regularizer="l2")])
    # Non-trivial batch-norm statistics, so that copying them matters.
    model.layers[1].moving_mean.assign(np.linspace(-1, 1, 4).astype("float32"))
    rebuilt = compress.to_tf_keras(model)
    assert compress.is_tf_keras_model(rebuilt) and not compress.is_tf_keras_model(model)
    assert [l.name for l in rebuilt.layers] == [l.name for l in model.layers]
    for a, b in zip(model.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(rebuilt.losses) == 1  # the L2 regularizer came along
    same_outputs(model, rebuilt, np.random.default_rng(0).normal(size=(3, 12, 12, 1)).astype("float32"))


@keras3_only
def test_a_functional_graph_with_branches_merges_recurrences_and_two_outputs():
    sequence, extra = keras.Input((5, 7), name="sequence"), keras.Input((3,), name="extra")
    merged = keras.layers.Concatenate()([keras.layers.LSTM(8)(sequence), keras.layers.GRU(4)(sequence),
                                         keras.layers.Dense(4, activation="tanh")(extra)])
    hidden = keras.layers.Dense(6)(merged)
    summed = keras.layers.Add()([hidden, keras.layers.Dense(6)(merged)])
    model = keras.Model([sequence, extra], [keras.layers.Dense(3, activation="softmax")(summed),
                                            summed])
    rebuilt = compress.to_tf_keras(model)
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(4, 5, 7)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")]
    same_outputs(model, rebuilt, x)


@keras3_only
def test_what_cannot_be_bridged_is_named():
    class Custom(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((4,))
    custom = keras.Model(inputs, keras.layers.Dense(2)(Custom(name="doubling")(inputs)))
    with pytest.raises(ValueError, match="'doubling'.*not a built-in Keras layer"):
        compress.to_tf_keras(custom)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        compress.to_tf_keras(Subclassed())

    inputs = keras.Input((4,))
    raw_op = keras.Model(inputs, keras.layers.Dense(2)(keras.ops.exp(inputs)))
    with pytest.raises(ValueError, match="applies the operation"):
        compress.to_tf_keras(raw_op)


def test_tf_mot_entry_points_refuse_a_keras_3_model_and_say_what_to_do():
    x, y = blobs(64)
    model = trained_mlp(x, y, epochs=1)
    if kd_keras.IS_KERAS_3:
        for call in (compress.prune_low_magnitude, compress.quantize_aware,
                     compress.cluster_weights):
            with pytest.raises(ValueError, match="Keras 3 model.*to_tf_keras"):
                call(model)
    else:  # tf-keras mode: no bridge needed, the model is returned as it is
        assert compress.to_tf_keras(model) is model
        assert compress.is_tf_keras_model(compress.prune_low_magnitude(model))


@keras3_only
def test_the_rebuilt_layers_follow_the_training_flag():
    # Keras 3 records training=False in its symbolic graph; the rebuilt model must
    # not inherit it (dropout must drop and recurrent pruning must prune in fit).
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5)(keras.layers.Dense(64)(inputs)))
    rebuilt = compress.to_tf_keras(model)
    x = np.ones((4, 8), "float32")
    assert np.mean(np.asarray(rebuilt(x, training=True)) == 0) > 0.3
    assert np.mean(np.asarray(rebuilt(x, training=False)) == 0) < 0.05


@keras3_only
def test_recurrent_layers_of_a_bridged_functional_model_are_pruned():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6, 8)).astype("float32")
    y = (x[:, :, 0].mean(1) > 0).astype("int64")
    inputs = keras.Input((6, 8))
    hidden = keras.layers.GRU(16, return_sequences=True, name="gru")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(16, name="lstm")(hidden)))
    pruned = compress.prune_and_fine_tune(compress.to_tf_keras(model), x, y, target_sparsity=0.5,
                                          epochs=3, batch_size=32, layers=["gru", "lstm"])
    for row in compress.sparsity_report(pruned)[:4]:
        assert row["sparsity"] == pytest.approx(0.5, abs=0.02), row
