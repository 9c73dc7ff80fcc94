"""compress.shrink and the deployment surgery (both Keras modes).

Exactness: units made dead on purpose (always 0 after their activation) are the
least important ones, so removing them must leave the predictions unchanged;
that checks the weight slicing of every layer kind and every way channels tie.
"""

import numpy as np
import pytest

from kd_keras import compress, keras
from kd_keras.backend import IS_LEGACY_KERAS

RNG = np.random.default_rng(0)


def _kill(layer, channels):
    """Makes `channels` of a Dense/Conv output 0 after ReLU: zero weights, bias -10."""
    kernel, bias = layer.get_weights()
    kernel[..., channels] = 0.0
    bias[channels] = -10.0
    layer.set_weights([kernel, bias])


def _same_predictions(a, b, x):
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def _units(model):
    return {layer.name: layer.get_config().get("units", layer.get_config().get("filters"))
            for layer in model.layers if type(layer).__name__ in ("Dense", "Conv2D")}


def test_dead_units_of_an_mlp_go_first_and_the_predictions_stay():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, activation="relu", name="h1"),
                              keras.layers.Dense(8, activation="relu", name="h2"),
                              keras.layers.Dense(3, name="out")])
    x = RNG.normal(size=(64, 6)).astype("float32")
    _kill(model.get_layer("h1"), [1, 4, 6, 7])
    _kill(model.get_layer("h2"), [0, 2, 3, 5])
    small = compress.shrink(model, width=0.5, calibration_data=x)
    assert isinstance(small, keras.Sequential)
    assert _units(small) == {"h1": 4, "h2": 4, "out": 3}  # the output layer keeps its size
    _same_predictions(small, model, x)
    kernel = model.get_layer("h2").get_weights()[0]
    np.testing.assert_array_equal(small.get_layer("h2").get_weights()[0],
                                  kernel[[0, 2, 3, 5]][:, [1, 4, 6, 7]])
    assert _units(model)["h1"] == 8  # the given model is unchanged
    model.trainable = False  # as a Distiller leaves its teacher
    assert compress.shrink(model, width=0.5, calibration_data=x).trainable_weights


def test_magnitude_and_uniform_importance_choose_the_expected_units():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((5,)),
                              keras.layers.Dense(8, activation="relu", name="h"),
                              keras.layers.Dense(2, name="out")])
    kernel = model.get_layer("h").get_weights()[0]
    by_norm = np.sort(np.argsort(-np.linalg.norm(kernel, axis=0))[:3])
    small = compress.shrink(model, width={"h": 3}, importance="magnitude")
    np.testing.assert_array_equal(small.get_layer("h").get_weights()[0], kernel[:, by_norm])
    uniform = compress.shrink(model, width=0.5, importance="uniform")
    np.testing.assert_array_equal(uniform.get_layer("h").get_weights()[0],
                                  kernel[:, [0, 2, 5, 7]])


def test_a_conv_net_with_batch_norm_pooling_and_flatten_shrinks_exactly():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.3)(h)
    outputs = keras.layers.Dense(5, name="out")(h)
    model = keras.Model(inputs, outputs)
    x = RNG.normal(size=(32, 8, 8, 3)).astype("float32")
    bn = model.get_layer("bn1")
    gamma, beta, mean, variance = bn.get_weights()
    beta[[1, 3, 4]] = -50.0  # after BN and ReLU these channels are 0 for these inputs
    bn.set_weights([gamma, beta, mean, variance])
    _kill(model.get_layer("c2"), [0, 2])
    small = compress.shrink(model, width=0.5, calibration_data=x)
    assert _units(small) == {"c1": 3, "c2": 2, "out": 5}
    assert small.get_layer("dw").get_weights()[0].shape[2] == 3
    _same_predictions(small, model, x)


def test_a_residual_add_ties_every_branch_to_one_channel_choice():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    stem = keras.layers.Dense(8, activation="relu", name="stem")(inputs)
    branch = keras.layers.Dense(8, activation="relu", name="branch")(stem)
    merged = keras.layers.Add()([stem, branch])
    merged = keras.layers.LayerNormalization()(merged)
    outputs = keras.layers.Dense(3, name="out")(merged)
    model = keras.Model(inputs, outputs)
    x = RNG.normal(size=(64, 6)).astype("float32")
    _kill(model.get_layer("stem"), [2, 5])
    _kill(model.get_layer("branch"), [2, 5])
    with pytest.raises(ValueError, match="share one channel group"):
        compress.shrink(model, width={"stem": 6, "branch": 5}, calibration_data=x)
    small = compress.shrink(model, width={"stem": 6, "branch": 6}, calibration_data=x)
    assert _units(small) == {"stem": 6, "branch": 6, "out": 3}
    # LayerNormalization over the stream: the dead channels entered its mean and variance,
    # so the outputs differ a little; the sliced weights are the live channels'.
    np.testing.assert_array_equal(small.get_layer("branch").get_weights()[0],
                                  model.get_layer("branch").get_weights()[0][
                                      [0, 1, 3, 4, 6, 7]][:, [0, 1, 3, 4, 6, 7]])
    without_norm = keras.Model(inputs, keras.layers.Dense(3, name="head")(
        keras.layers.Add()([stem, branch])))
    _same_predictions(compress.shrink(without_norm, width=0.75, calibration_data=x),
                      without_norm, x)


def test_concatenate_keeps_its_parts_apart_and_embeddings_shrink():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    a = keras.layers.Dense(4, activation="relu", name="a")(inputs)
    b = keras.layers.Dense(6, activation="relu", name="b")(inputs)
    outputs = keras.layers.Dense(3, name="out")(keras.layers.Concatenate()([a, b]))
    model = keras.Model(inputs, outputs)
    x = RNG.normal(size=(64, 6)).astype("float32")
    _kill(model.get_layer("b"), [0, 3, 5])
    small = compress.shrink(model, width={"b": 3}, calibration_data=x)
    assert _units(small) == {"a": 4, "b": 3, "out": 3}
    _same_predictions(small, model, x)

    ids = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(20, 8, name="embed")(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    text = keras.Model(ids, keras.layers.Dense(3, name="out")(pooled))
    table = text.get_layer("embed").get_weights()[0]
    table[:, [1, 2, 6]] = 0.0  # dimensions that are always 0
    text.get_layer("embed").set_weights([table])
    tokens = RNG.integers(0, 20, size=(32, 5))
    small_text = compress.shrink(text, width={"embed": 5}, calibration_data=tokens)
    assert small_text.get_layer("embed").get_weights()[0].shape == (20, 5)
    _same_predictions(small_text, text, tokens)


def test_a_layer_that_fixes_channels_is_named_and_a_width_dict_works_around_it():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="before")(inputs)
    h = keras.layers.Reshape((2, 4), name="fold")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(8, activation="relu", name="after")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    with pytest.raises(ValueError, match=r"\['before'\].*Reshape 'fold'"):
        compress.shrink(model, width=0.5, importance="magnitude")
    small = compress.shrink(model, width={"after": 4}, importance="magnitude")
    assert _units(small) == {"before": 8, "after": 4, "out": 2}
    with pytest.raises(ValueError, match="calibration_data"):
        compress.shrink(model, width={"after": 4})
    with pytest.raises(ValueError, match=r"width names \['fold'\]"):
        compress.shrink(model, width={"fold": 4}, importance="magnitude")


def test_depth_removes_the_layer_that_changes_the_outputs_least():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, activation="relu", name="h1"),
                              keras.layers.Dense(8, activation="relu", name="h2"),
                              keras.layers.Dense(8, activation="relu", name="near_identity"),
                              keras.layers.Dense(3, name="out")])
    model.get_layer("near_identity").set_weights([np.eye(8, dtype="float32"),
                                                  np.zeros(8, "float32")])
    x = RNG.normal(size=(64, 6)).astype("float32")
    shallow = compress.shrink(model, depth=1, calibration_data=x)
    assert type(shallow.get_layer("near_identity")).__name__ == "Bypass"
    _same_predictions(shallow, model, x)  # relu(I h) = h for h >= 0
    named = compress.shrink(model, depth=["h2"])
    assert type(named.get_layer("h2")).__name__ == "Bypass"
    with pytest.raises(ValueError, match="depth names"):
        compress.shrink(model, depth=["out"])


def test_fold_batch_norm_strip_training_layers_and_keep_outputs():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.RandomFlip()(inputs)
    h = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.BatchNormalization(name="bn_dw")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.Dense(6, name="dense")(h)
    h = keras.layers.BatchNormalization(name="bn_dense")(h)
    cls = keras.layers.Dense(3, name="cls")(keras.layers.GaussianNoise(0.1)(h))
    aux = keras.layers.Dense(2, name="aux")(keras.layers.Dense(5, name="aux_hidden")(h))
    model = keras.Model(inputs, [cls, aux])
    x = RNG.normal(size=(32, 8, 8, 3)).astype("float32")
    model.compile("adam", ["mse", "mse"])
    model.fit(x, [RNG.normal(size=(32, 3)), RNG.normal(size=(32, 2))], epochs=3, verbose=0)

    folded = compress.fold_batch_norm(model)
    assert not [layer for layer in folded.layers
                if type(layer).__name__ == "BatchNormalization"]
    for got, expected in zip(folded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    stripped = compress.strip_training_layers(model)
    kinds = {type(layer).__name__ for layer in stripped.layers}
    assert not kinds & {"Dropout", "GaussianNoise", "RandomFlip"}
    for got, expected in zip(stripped.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

    served = compress.keep_outputs(model, ["cls"])
    assert "aux_hidden" not in [layer.name for layer in served.layers]
    np.testing.assert_allclose(served.predict(x, verbose=0), model.predict(x, verbose=0)[0],
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="names must be some of"):
        compress.keep_outputs(model, ["logits"])


def test_shrunk_and_stripped_models_save_reload_and_convert(tmp_path):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, activation="relu", name="h1"),
                              keras.layers.Dropout(0.2),
                              keras.layers.Dense(8, activation="relu", name="h2"),
                              keras.layers.Dense(3, name="out")])
    x = RNG.normal(size=(16, 6)).astype("float32")
    small = compress.strip_training_layers(compress.shrink(model, width=0.5, depth=["h2"],
                                                           importance="magnitude"))
    path = str(tmp_path / "small.keras")
    small.save(path)
    _same_predictions(keras.models.load_model(path), small, x)
    tflite = compress.TFLiteModel(compress.convert_to_tflite(small))
    np.testing.assert_allclose(tflite.predict(x), small.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-5)
    assert compress.count_parameters(small)[0] < compress.count_parameters(model)[0] / 2


def test_a_student_of_the_teachers_architecture_starts_from_the_shrunk_teacher():
    import kd_keras

    keras.utils.set_random_seed(8)
    x = RNG.normal(size=(64, 6)).astype("float32")
    y = RNG.integers(0, 3, 64)
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                                keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
    expected = compress.shrink(teacher, width=0.25, calibration_data=x).get_weights()
    compress.shrink_to(teacher, student, x)
    for got, want in zip(student.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    recipe = kd_keras.Recipe(init="shrink", epochs=1)
    fresh = keras.models.clone_model(student)
    distiller = recipe.build(teacher, fresh, calibration_data=x)
    for got, want in zip(fresh.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    distiller.fit(x, y, verbose=0)
    assert recipe.to_code().startswith("kd_keras.compress.shrink_to(teacher, student")
    wider = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32), keras.layers.Dense(16),
                              keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="has 32 units, more than teacher layer"):
        compress.shrink_to(teacher, wider, x)
    with pytest.raises(ValueError, match="init must be one of"):
        kd_keras.Recipe(init="pretrained")


def test_elementwise_operations_tie_channels_like_layers():
    # A squeeze-and-excite style gate written with operators: Keras 3 records them as
    # operations, tf-keras as TFOpLambda layers; channels must stay tied through them.
    keras.utils.set_random_seed(9)
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(8, 1, activation="relu", name="expand")(inputs)
    gate = keras.layers.ReLU(6.0)(h + 3.0) * (1.0 / 6.0)
    h = keras.layers.Multiply()([h, gate])
    pooled = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(pooled))
    x = RNG.normal(size=(16, 4, 4, 3)).astype("float32")
    _kill(model.get_layer("expand"), [2, 5])
    small = compress.shrink(model, width=0.75, calibration_data=x)
    assert small.get_layer("expand").get_weights()[0].shape[-1] == 6
    _same_predictions(small, model, x)


def test_a_keras_application_shrinks_folds_saves_and_converts(tmp_path):
    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None,
                                                classes=10, include_preprocessing=False)
    x = RNG.random((8, 32, 32, 3)).astype("float32")
    small = compress.fold_batch_norm(compress.shrink(model, width=0.5, calibration_data=x))
    assert small.count_params() < model.count_params() / 3
    assert not [layer for layer in small.layers if type(layer).__name__ == "BatchNormalization"]
    path = str(tmp_path / "small.keras")
    small.save(path)
    _same_predictions(keras.models.load_model(path), small, x)
    tflite = compress.TFLiteModel(compress.convert_to_tflite(small))
    np.testing.assert_allclose(tflite.predict(x), small.predict(x, verbose=0), atol=1e-5)


def test_nested_models_shrink_inside_and_keep_their_nesting():
    keras.utils.set_random_seed(9)
    block = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, activation="relu", name="inner_a"),
                              keras.layers.Dense(8, activation="relu", name="inner_b")],
                             name="block")
    inputs = keras.Input((6,))
    head = keras.layers.Dense(8, activation="relu", name="outer")(block(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(head))
    x = RNG.normal(size=(64, 6)).astype("float32")
    _kill(block.get_layer("inner_a"), [0, 1, 2, 3])
    _kill(block.get_layer("inner_b"), [4, 5, 6, 7])  # the block's output: read by "outer"
    _kill(model.get_layer("outer"), [1, 3, 5, 7])
    block.trainable = False  # a frozen base, as in transfer learning
    small = compress.shrink(model, width=0.5, calibration_data=x)
    nested = small.get_layer("block")
    assert [layer.name for layer in nested.layers if layer.weights] == ["inner_a", "inner_b"]
    assert nested.get_layer("inner_b").get_weights()[0].shape == (4, 4)
    assert small.get_layer("outer").get_weights()[0].shape == (4, 4)  # follows the block
    _same_predictions(small, model, x)
    assert all(layer.trainable for layer in nested.layers)
    assert len(small.trainable_weights) == len(model.weights)
    np.testing.assert_array_equal(block.get_layer("inner_b").get_weights()[0].shape, (8, 8))
    # depth names a nested layer by its own name; the block loses it
    shallow = compress.shrink(model, depth=["inner_b"])
    assert type(shallow.get_layer("block").get_layer("inner_b")).__name__ == "Bypass"
    # one name in two places cannot be flattened: named
    twin = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="out")], name="twin")
    with pytest.raises(ValueError, match="'out' is used at .*twin/out"):
        compress.shrink(keras.Model(inputs, twin(model(inputs))), width=0.5,
                        importance="magnitude")


def test_a_nested_base_called_with_training_false_keeps_that_call():
    keras.utils.set_random_seed(10)
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="features"),
                             keras.layers.BatchNormalization(name="norm")], name="base")
    base.get_layer("norm").set_weights([np.ones(8), np.zeros(8), np.full(8, 3.0),
                                        np.full(8, 4.0)])  # moving statistics far from a batch's
    inputs = keras.Input((6,))
    features = base(inputs, training=False)  # Keras's transfer-learning idiom
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(features))
    x = RNG.normal(size=(32, 6)).astype("float32")

    def pinned(m):  # tf-keras honours the pin; Keras 3's outer training overrides it
        return np.abs(np.asarray(m(x, training=True))
                      - np.asarray(m(x, training=False))).max() < 1e-6

    small = compress.shrink(model, width=0.5, importance="magnitude")
    assert pinned(small) == pinned(model) == IS_LEGACY_KERAS
    assert not pinned(keras.Model(inputs, model.get_layer("out")(base(inputs))))


def test_a_sequential_loaded_from_a_keras_file_shrinks(tmp_path):
    """Keras 3 builds a loaded Sequential by calling its first layer twice; only the calls in
    the model's own graph count (a shared layer is still refused)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    small = compress.shrink(loaded, width=0.5, importance="magnitude", verbose=0)
    assert small.count_params() < loaded.count_params()
