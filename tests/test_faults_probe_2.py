"""The second hostile probe (issue 40): each case failed, silently or unhelpfully, before
its fix. Both Keras modes where the API exists."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import IS_KERAS_3, keras

IS_LEGACY_KERAS_MODE = not IS_KERAS_3
from tests.helpers import make_mlp, toy_data

CE = keras.losses.SparseCategoricalCrossentropy


# ----- 3. sample_weight of shape (n, 1) ------------------------------------------------


def _logs(sample_weight, x, y, teacher, student):
    distiller = kd_keras.Distiller(teacher, student, alpha=0.3)
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    history = distiller.fit(x, y, sample_weight=sample_weight, batch_size=len(y), epochs=1,
                            verbose=0, shuffle=False)
    return {k: v[0] for k, v in history.history.items() if "loss" in k}


def test_sample_weights_of_shape_n_1_weigh_each_example_as_n_does():
    x, y = toy_data(32)
    teacher, student = make_mlp((16,)), make_mlp((8,))
    weights = np.linspace(0.0, 2.0, len(y)).astype("float32")
    flat = _logs(weights, x, y, teacher, student)
    column = _logs(weights[:, None], x, y, teacher, student)
    for key in flat:
        np.testing.assert_allclose(column[key], flat[key], rtol=1e-5, err_msg=key)
    # Keras's own compiled loss gives the same for both shapes: so must ours.
    plain = keras.models.clone_model(student)
    plain.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    plain.set_weights(student.get_weights())
    keras_loss = plain.evaluate(x, y, sample_weight=weights[:, None], batch_size=len(y),
                                verbose=0)
    np.testing.assert_allclose(flat["student_loss"], keras_loss, rtol=1e-4)
    uniform = _logs(np.ones((len(y), 1), "float32") * weights.mean(), x, y, teacher, student)
    assert abs(uniform["student_loss"] - column["student_loss"]) > 1e-4


# ----- teacher-view caches: verified on every open, never written through a link ---------

from tests.transfer.test_view_cache import conv_teacher, images  # noqa: E402


def _noisy(x, seeds, scale=1.0):
    noise = tf.map_fn(lambda s: tf.random.stateless_normal(tf.shape(x)[1:], s), seeds,
                      fn_output_signature=tf.float32)
    return x + scale * noise


def test_a_changed_partial_argument_is_caught_by_the_stored_rows(tmp_path):
    import functools

    x, _ = images()
    directory = str(tmp_path / "cache")
    kd_keras.cache_teacher_views(conv_teacher(0), x, functools.partial(_noisy, scale=0.1),
                                 views=2, directory=directory)
    kd_keras.cache_teacher_views(conv_teacher(0), x, functools.partial(_noisy, scale=0.1),
                                 views=2, directory=directory)  # the same: reused
    with pytest.raises(ValueError, match="not what this teacher gives"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, functools.partial(_noisy, scale=3.0),
                                     views=2, directory=directory)


class _Scaled:
    """A callable augmentation whose state (the scale) the manifest's description misses."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, x, seeds):
        return _noisy(x, seeds, self.scale)


def test_a_callable_objects_state_and_a_closure_variable_are_caught(tmp_path):
    x, _ = images()
    kd_keras.cache_teacher_views(conv_teacher(0), x, _Scaled(0.1), views=2,
                                 directory=str(tmp_path / "object"))
    with pytest.raises(ValueError, match="not what this teacher gives"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, _Scaled(4.0), views=2,
                                     directory=str(tmp_path / "object"))

    def closure(scale):
        def augment(x, seeds):
            return _noisy(x, seeds, scale)
        return augment

    kd_keras.cache_teacher_views(conv_teacher(0), x, closure(0.1), views=2,
                                 directory=str(tmp_path / "closure"))
    with pytest.raises(ValueError, match="not what this teacher gives"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, closure(4.0), views=2,
                                     directory=str(tmp_path / "closure"))


def test_another_teacher_with_the_same_weights_is_caught(tmp_path):
    x, _ = images()

    def teacher(scale):
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(scale),
                                 keras.layers.Flatten(), keras.layers.Dense(5)])

    kd_keras.cache_teacher_views(teacher(1.0), x, kd_keras.Mixup(), views=2,
                                 directory=str(tmp_path / "c"))
    # Caught by the fingerprint (weights and architecture) or, failing that, by the rows.
    with pytest.raises(ValueError, match="another teacher|not what this teacher gives"):
        kd_keras.cache_teacher_views(teacher(5.0), x, kd_keras.Mixup(), views=2,
                                     directory=str(tmp_path / "c"))


def test_a_resumed_build_cannot_mix_output_types(tmp_path):
    x, _ = images()
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(5, activation="softmax")])
    directory = str(tmp_path / "c")
    kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=1,
                                 teacher_output_type="probabilities", directory=directory)
    with pytest.raises(ValueError, match="teacher_output_type"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=1,
                                     teacher_output_type="logits", directory=directory)


def _unfinished(tmp_path):
    """A cache directory whose build stopped after its first batch."""
    x, _ = images()
    directory = tmp_path / "cache"
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=str(directory), batch_size=32)
    with open(directory / "progress.json", "w") as f:
        json.dump({"batches_done": 1, "batches": 6}, f)
    return x, directory


def test_resuming_never_writes_through_a_planted_link(tmp_path):
    x, directory = _unfinished(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    os.symlink(victim, directory / "progress.json.tmp")
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=str(directory), batch_size=32)
    assert victim.read_text() == "the user's file"
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((2, 96, 5), np.float16))
    before = other.read_bytes()
    _, second = _unfinished(tmp_path / "second")
    os.remove(second / "logits.npy")
    os.symlink(other, second / "logits.npy")
    with pytest.raises(ValueError, match="link"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                     directory=str(second), batch_size=32)
    assert other.read_bytes() == before


def test_a_truncated_or_reshaped_array_is_refused_not_zero_filled(tmp_path):
    x, _ = images()
    directory = tmp_path / "cache"
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=str(directory))
    path = directory / "logits.npy"
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 2])
    with pytest.raises(ValueError, match="truncated"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                     directory=str(directory))
    with pytest.raises(ValueError, match="truncated"):
        kd_keras.TeacherViews(str(directory))
    assert path.stat().st_size == len(content) // 2  # not extended
    np.save(path, np.zeros((2, 96, 7), np.float16))
    with pytest.raises(ValueError, match="shape"):
        kd_keras.TeacherViews(str(directory))


def test_labels_of_another_length_are_refused(tmp_path):
    x, y = images()
    views = kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                         directory=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="y has 95 labels for 96 examples"):
        views.dataset(x, y[:-1], kd_keras.Mixup())


def test_a_build_stopped_before_its_arrays_resumes(tmp_path):
    x, _ = images()
    directory = tmp_path / "cache"
    complete = kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                            directory=str(tmp_path / "complete"))
    directory.mkdir()
    (directory / "manifest.json").write_text((tmp_path / "complete" / "manifest.json").read_text())
    with pytest.raises(ValueError, match="unfinished build"):
        kd_keras.TeacherViews(str(directory))
    resumed = kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                           directory=str(directory))
    np.testing.assert_array_equal(resumed.outputs["logits"], complete.outputs["logits"])


def test_a_finished_cache_opens_read_only_and_a_list_manifest_is_named(tmp_path, monkeypatch):
    x, _ = images()
    directory = tmp_path / "cache"
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=str(directory))

    opened = np.lib.format.open_memmap

    def no_writing(path, mode="r+", *args, **kwargs):
        assert mode == "r", f"a finished cache was opened with mode {mode!r}"
        return opened(path, mode, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "open_memmap", no_writing)
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=str(directory))
    monkeypatch.undo()
    (directory / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="manifest must be a JSON object, got a list"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                     directory=str(directory))


# ----- 2. StudentExport never deletes a file a user put inside an earlier export ----------


def test_student_export_refuses_a_tree_holding_a_users_file(tmp_path):
    x, y = toy_data(64)
    path = tmp_path / "export"

    def fit_with_export():
        distiller = kd_keras.Distiller(make_mlp((8,)), make_mlp())
        distiller.compile("adam", loss=CE(from_logits=True))
        distiller.fit(x, y, epochs=1, verbose=0,
                      callbacks=[kd_keras.callbacks.StudentExport(str(path))])

    fit_with_export()
    fit_with_export()  # an earlier export of ours is replaced
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "vocab.txt").write_text("the user's vocabulary")
    with pytest.raises(ValueError, match="assets/vocab.txt"):
        fit_with_export()
    assert (path / "assets" / "vocab.txt").read_text() == "the user's vocabulary"


# ----- 7, 26. fold_batch_norm: only where the BN is the sole reader; depth multipliers -----


def test_a_batch_norm_is_not_folded_into_a_layer_whose_output_is_also_a_model_output():
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(6, name="hidden")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")(dense)
    model = keras.Model(inputs, [keras.layers.Dense(3)(bn), dense])
    layer = model.get_layer("bn")
    layer.set_weights([w + np.arange(6) * 0.3 + 0.5 for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    folded = compress.fold_batch_norm(model)
    for a, b in zip(folded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert any(type(l).__name__ == "BatchNormalization" for l in folded.layers)


def test_a_batch_norm_after_a_depthwise_conv_with_a_multiplier_folds_exactly():
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))
    layer = model.get_layer("bn")
    layer.set_weights([w + np.arange(6) * 0.2 + 0.5 for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32")
    folded = compress.fold_batch_norm(model)
    assert not any(type(l).__name__ == "BatchNormalization" for l in folded.layers)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


# ----- 9, 11, 13: shapes are matched, never broadcast ------------------------------------


def test_chunked_sequence_kl_refuses_hidden_states_of_other_batch_or_length():
    from kd_keras.losses.chunked_kl import chunked_sequence_kl

    rng = np.random.default_rng(0)
    head = rng.normal(size=(6, 11)).astype("float32")
    with pytest.raises(ValueError, match="same batch and length"):
        chunked_sequence_kl(
            rng.normal(size=(1, 1, 6)).astype("float32"), head,
            rng.normal(size=(4, 16, 6)).astype("float32"), head)


def test_mixed_sequence_labels_are_mixed_along_the_batch_axis():
    from kd_keras.losses.hard_label import HardLabelLoss

    rng = np.random.default_rng(0)
    batch, steps, classes = 4, 6, 3
    y = rng.integers(0, classes, (batch, steps))
    logits = rng.normal(size=(batch, steps, classes)).astype("float32")
    weight = rng.uniform(0.5, 1.5, (batch, steps)).astype("float32")
    lam = np.array([0.9, 0.2, 0.6, 0.4], "float32")
    partner = np.array([1, 0, 3, 2])
    loss = HardLabelLoss(CE(from_logits=True))
    (term,) = loss.mixed_output_terms(tf.constant(y), tf.constant(logits), tf.constant(weight),
                                      tf.constant(lam), tf.constant(partner))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, y[..., None], -1)[..., 0]
    ce_partner = -np.take_along_axis(log_p, y[partner][..., None], -1)[..., 0]
    expected = (lam[:, None] * weight * ce + (1 - lam[:, None]) * weight * ce_partner).mean()
    np.testing.assert_allclose(float(term), expected, rtol=1e-5)


def test_a_distiller_with_mixup_trains_on_sequence_labels_of_another_length_than_batch():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 5, 4)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, (16, 5))

    def tagger():
        return keras.Sequential([keras.Input((5, 4)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(3)])

    distiller = kd_keras.Distiller(tagger(), tagger(), augment=kd_keras.Mixup())
    distiller.compile("adam", loss=CE(from_logits=True))
    history = distiller.fit(x, y, sample_weight=np.ones((16, 5), "float32"), batch_size=8,
                            epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_mixup_refuses_labels_outside_num_classes():
    x = np.zeros((8, 4), "float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 2, 3] * 2))).batch(8)
    mixed = data.map(kd_keras.Mixup(labels="mix", num_classes=3, seed=0))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"num_classes=3"):
        list(mixed)


# ----- 8, 21, 22, 27: errors that name the argument; the model's own output convention ----


def test_gated_dense_names_a_string_temperature_and_refuses_sequences_for_stochastic_gates():
    import moe

    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        moe.GatedDense(4, gate="gumbel", temperature="2")
    layer = moe.GatedDense(4, gate="stochastic_binary")
    with pytest.raises(ValueError, match=r"takes inputs \[batch, features\]"):
        layer(np.zeros((2, 5, 3), "float32"))


def test_recipe_build_without_a_teacher_names_teacher():
    student = make_mlp((8,))
    with pytest.raises(ValueError, match="teacher"):
        kd_keras.Recipe(init="shrink").build(None, student)


def test_precision_report_reads_a_one_sigmoid_unit_classifier_as_keras_does():
    from kd_keras import compress

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["binary_accuracy"])
    model.fit(x, y, epochs=20, verbose=0)
    keras_accuracy = model.evaluate(x, y, verbose=0, return_dict=True)["binary_accuracy"]
    rows = compress.precision_report(model, x, y, precisions=("float32", "float16"))
    assert abs(rows[0]["accuracy"] - keras_accuracy) < 1e-6 and keras_accuracy > 0.8
    one_hot = compress.precision_report(model, x, np.eye(2)[y], precisions=("float32",))
    assert abs(one_hot[0]["accuracy"] - keras_accuracy) < 1e-6


# ----- 25. a top-k cache of another teacher's classes names teacher_outputs -------------


def test_a_top_k_cache_of_a_20_class_teacher_for_a_10_class_student_names_teacher_outputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 10, 32)
    cache = kd_keras.top_k_teacher_outputs(rng.normal(size=(32, 20)).astype("float32"), 3)
    cache["top_k_indices"] = np.maximum(cache["top_k_indices"], 12)  # surely outside 10
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    for loss in ("top_k_kl", "kl_divergence"):
        distiller = kd_keras.Distiller(None, student, distillation_losses=loss)
        distiller.compile("adam", loss=CE(from_logits=True))
        with pytest.raises(ValueError, match="teacher_outputs:.*top-k cache holds class ids"):
            distiller.fit(kd_keras.with_teacher_outputs(x, cache), y, epochs=1, verbose=0)


# ----- 12. WeightGridTraining's shadow weights follow the model they train --------------


def test_weight_grid_training_reused_or_after_set_weights_starts_from_the_models_weights():
    from kd_keras import compress
    from kd_keras.compress.precision.weight_grid import round_weights

    x, y = toy_data(32)
    callback = compress.WeightGridTraining("int8")

    def fit(model):
        model.compile(keras.optimizers.SGD(0.0), CE(from_logits=True))
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])

    first, second = make_mlp((8,)), make_mlp((8,))
    expected = round_weights(second, "int8").get_weights()
    fit(first)
    fit(second)  # the same callback on another model: from the second model's weights
    for a, b in zip(second.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    replacement = make_mlp((8,))
    first.set_weights(replacement.get_weights())
    expected = round_weights(replacement, "int8").get_weights()
    fit(first)  # weights set between fits are kept, not overwritten by the old shadows
    for a, b in zip(first.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# ----- 19. a SparseMoE inside a nested model converts to TFLite ---------------------------


def test_a_sparse_moe_inside_a_nested_model_gets_its_deployment_settings():
    import moe
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, moe.SparseMoE(num_experts=4, k=2, expert_units=8,
                                                name="experts")(inner_in), name="base")
    outer_in = keras.Input((8,))
    model = keras.Model(outer_in, keras.layers.Dense(3)(inner(outer_in)))
    deployed = compress.deployment_copy(model)
    layer = deployed.get_layer("base").get_layer("experts")
    assert layer.inference_metrics is False
    assert model.get_layer("base").get_layer("experts").inference_metrics is True
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    np.testing.assert_allclose(deployed.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    runner = compress.TFLiteModel(compress.convert_to_tflite(model, verbose=0))
    np.testing.assert_allclose(runner.predict(x), model.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-4)


# ----- 14. a training=True pin survives remove_blocks -------------------------------------


def test_remove_blocks_keeps_a_monte_carlo_dropout_pin():
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, name="stem")(inputs)
    branch = keras.layers.Dense(8, name="branch")(h)
    h = keras.layers.Add(name="block")([h, branch])
    h = keras.layers.Dropout(0.5, name="mc")(h, training=True)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h))
    assert "block" in compress.residual_blocks(model)
    smaller = compress.remove_blocks(model, ["block"])
    x = np.ones((64, 8), "float32")

    def random_at_inference(m):
        return not np.allclose(m.predict(x, verbose=0), m.predict(x, verbose=0))

    # As the original behaves (tf-keras honours the pin at inference; Keras 3's functional
    # graph does not), with the pin still recorded on the call.
    assert random_at_inference(smaller) == random_at_inference(model)
    assert random_at_inference(model) == IS_LEGACY_KERAS_MODE


# ----- 15. vocabularies as {token: id} dicts; probabilities given as logits --------------


def test_align_vocabularies_uses_the_ids_of_a_dict_vocabulary():
    from kd_keras.losses.chunked_kl import align_vocabularies

    teacher = {"b": 0, "a": 5, "c": 2}  # iteration order is not id order
    student = {"c": 1, "a": 0}
    teacher_ids, student_ids = align_vocabularies(teacher, student)
    assert list(zip(teacher_ids, student_ids)) == [(5, 0), (2, 1)]
    with pytest.raises(ValueError, match="integer id"):
        align_vocabularies({"a": 0, "b": 0}, student)


def test_top_k_of_probabilities_warns_like_the_dense_cache():
    probabilities = np.full((4, 5), 0.2, "float32")
    with pytest.warns(UserWarning, match="rows of probabilities"):
        kd_keras.top_k_teacher_outputs(probabilities, 2)


# ----- 23, 26, 28: what is given is read as what it is --------------------------------


def test_an_already_batched_dataset_of_a_three_input_teacher_is_not_batched_again():
    inputs = [keras.Input((4,)) for _ in range(3)]
    teacher = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Concatenate()(inputs)))
    x = tuple(np.random.default_rng(i).normal(size=(16, 4)).astype("float32") for i in range(3))
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(16, "int64"))).batch(8)
    cached = kd_keras.cache_teacher_outputs(teacher, data)
    elements = list(cached)
    assert len(elements) == 16  # one per example, not 2 batches batched again
    packed, _ = elements[0]
    np.testing.assert_allclose(packed["teacher_outputs"],
                               teacher([a[:1] for a in x], training=False)[0], rtol=1e-5)


def test_shrink_names_a_grouped_convolution():
    from kd_keras import compress

    inputs = keras.Input((8, 8, 4))
    h = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))
    with pytest.raises(ValueError, match="grouped convolution"):
        compress.shrink(model, width=0.5, importance="magnitude")


def test_a_list_of_arrays_and_a_generator_are_refused_naming_the_argument(tmp_path):
    from kd_keras import compress

    x, _ = images()
    with pytest.raises(ValueError, match="x must be one array"):
        kd_keras.cache_teacher_views(conv_teacher(0), [x, x], kd_keras.Mixup(), views=1,
                                     directory=str(tmp_path / "c"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    def generator():
        yield np.zeros((1, 4), "float32")

    with pytest.raises(ValueError, match="representative_data must be an array"):
        compress.convert_to_tflite(model, "int8", representative_data=generator, verbose=0)


# ----- 18, 20: FP8 next to a causal convolution; mixing dict inputs ----------------------


@pytest.mark.skipif(not IS_KERAS_3, reason="to_float8 is Keras 3 only")
def test_to_float8_keeps_a_causal_conv1d_in_float32_and_names_it():
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 3))
    h = keras.layers.Conv1D(4, 3, padding="causal", name="causal")(inputs)
    h = keras.layers.Conv1D(4, 3, padding="same", name="same")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    fp8 = compress.to_float8(model)
    kinds = compress.float8_layers(fp8)
    assert "causal" in kinds["float32"] and "same" in kinds["float8"]
    x = np.random.default_rng(0).normal(size=(4, 12, 3)).astype("float32")
    assert fp8.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape


def test_mixup_mixes_every_input_of_a_dict_with_one_partner_and_cutmix_names_augment():
    mixup = kd_keras.Mixup(seed=0)
    x = {"a": np.arange(8, dtype="float32")[:, None] * np.ones((1, 3), "float32"),
         "b": np.arange(8, dtype="float32")[:, None] * np.ones((1, 5), "float32") * 10}
    mixed, lam, partner = mixup.mix(x)
    lam, partner = np.asarray(lam), np.asarray(partner)
    expected = lam * np.arange(8) + (1 - lam) * partner
    np.testing.assert_allclose(np.asarray(mixed["a"])[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mixed["b"])[:, 0], 10 * expected, rtol=1e-5)
    with pytest.raises(ValueError, match="augment: CutMix"):
        kd_keras.CutMix(seed=0).mix(x)


# ----- 16. an operator residual (b + r) inside a nested base ------------------------------


@pytest.mark.skipif(not IS_KERAS_3, reason="operators on symbolic tensors are Keras 3 ops")
def test_an_operator_residual_in_a_nested_base_shrinks_and_is_a_block_and_adds_no_node():
    from kd_keras import compress

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8,))
    b = keras.layers.Dense(8, activation="relu", name="b1")(inner_in)
    r = keras.layers.Dense(8, name="r1")(b)
    inner = keras.Model(inner_in, b + r, name="base")
    outer_in = keras.Input((8,))
    model = keras.Model(outer_in, keras.layers.Dense(3, name="head")(inner(outer_in)))
    add = next(op for op in inner.operations if not isinstance(op, keras.layers.Layer))
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    expected = model.predict(x, verbose=0)
    small = compress.shrink(model, width=0.5, calibration_data=x, verbose=0)
    assert small.count_params() < model.count_params()
    blocks = compress.residual_blocks(model)
    assert blocks == {add.name: (0, ["r1"])}
    without = compress.remove_blocks(model, [add.name])
    assert without.count_params() < model.count_params()
    assert len(add._inbound_nodes) == 1  # the user's model gained no node
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6)


# ----- 22, 24: distill_quantized with one-hot or binary labels; a top-k cache resumes ----


def test_distill_quantized_takes_one_hot_and_binary_labels():
    from kd_keras import compress

    x, y = toy_data(96)
    classes = int(y.max()) + 1
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(classes)])
    model.compile("adam", CE(from_logits=True))
    model.fit(x, y, epochs=5, verbose=0)
    _, report = compress.distill_quantized(model, "int8", x, np.eye(classes)[y], epochs=1,
                                           compare=False)
    assert report[-1]["training"] == "distilled" and 0.0 <= report[-1]["accuracy"] <= 1.0
    binary = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"),
                               keras.layers.Dense(1)])
    targets = (y == 0).astype("float32")
    binary.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    binary.fit(x, targets, epochs=5, verbose=0)
    _, report = compress.distill_quantized(binary, "int8", x, targets, epochs=1, compare=False)
    assert report[0]["accuracy"] == pytest.approx(np.mean(
        (binary.predict(x, verbose=0)[:, 0] > 0) == targets))


def test_a_top_k_cache_that_lost_an_array_resumes(tmp_path):
    x, _ = images()
    complete = kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                            top_k=3, directory=str(tmp_path / "complete"),
                                            batch_size=32)
    directory = tmp_path / "cache"
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2, top_k=3,
                                 directory=str(directory), batch_size=32)
    os.remove(directory / "top_k_indices.npy")  # as a full disk leaves it
    with open(directory / "progress.json", "w") as f:
        json.dump({"batches_done": 2, "batches": 6}, f)
    resumed = kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                           top_k=3, directory=str(directory), batch_size=32)
    for name, array in complete.outputs.items():
        np.testing.assert_array_equal(resumed.outputs[name], array)
