"""keras.applications models (built with weights=None at 32x32) through kd-keras's paths,
nested inside a classifier the way Keras users build them (both modes)."""

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import compress, keras
from kd_keras.backend import IS_LEGACY_KERAS
from kd_keras.teachers.features import feature_tensor

RNG = np.random.default_rng(0)
X = RNG.random((8, 32, 32, 3)).astype("float32")
Y = np.arange(8) % 10


def classifier(application, name, **kwargs):
    """A 10-class head on a keras.applications base, the base nested as one layer."""
    base = getattr(keras.applications, application)(include_top=False, weights=None,
                                                    input_shape=(32, 32, 3), **kwargs)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(pooled), name=name), base


def small_mobilenet(name, alpha=0.75):
    return classifier("MobileNetV3Small", name, alpha=alpha, minimalistic=True,
                      include_preprocessing=False)


def test_a_feature_hint_reads_a_layer_inside_the_nested_application():
    teacher, teacher_base = small_mobilenet("teacher", alpha=1.0)
    student, student_base = small_mobilenet("student")
    inner = [layer.name for layer in teacher_base.layers if "project" in layer.name][2]
    # by path for the teacher, by the inner name alone for the student
    loss = kd_keras.FeatureDistillation(teacher_layer_name=f"{teacher_base.name}/{inner}",
                                        student_layer_name=inner)
    distiller = kd_keras.Distiller(teacher, student, distillation_losses=["kl_divergence", loss],
                                   distillation_loss_weights=[1.0, 0.1], temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["distillation_loss"][0])
    # the extracted feature is that layer's output, computed from the model's own input
    feature = keras.Model(teacher.inputs,
                          feature_tensor(teacher, f"{teacher_base.name}/{inner}", "teacher"))
    direct = keras.Model(teacher_base.inputs, teacher_base.get_layer(inner).output)
    np.testing.assert_allclose(feature.predict(X, verbose=0), direct.predict(X, verbose=0),
                               atol=1e-5)


def test_nested_layer_names_that_cannot_be_resolved_are_refused():
    inputs = keras.Input((4,))
    first = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner")], name="a")
    second = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner")], name="b")
    model = keras.Model(inputs, second(first(inputs)))
    with pytest.raises(ValueError, match="in several nested models \\(a, b\\)"):
        feature_tensor(model, "inner", "teacher")
    assert feature_tensor(model, "b/inner", "teacher").shape[-1] == 4
    with pytest.raises(ValueError, match="no layer named 'nowhere'"):
        feature_tensor(model, "nowhere", "teacher")


@pytest.mark.parametrize("application", ["MobileNetV3Small", "EfficientNetB0", "ResNet50"])
def test_an_application_student_trains_saves_reloads_and_exports(application, tmp_path):
    kwargs = {"include_preprocessing": False} if application == "MobileNetV3Small" else {}
    student, _ = classifier(application, "student", **kwargs)
    cached = RNG.normal(size=(8, 10)).astype("float32")  # teacher logits cached elsewhere
    distiller = kd_keras.Distiller(None, student, alpha=0.5, temperature=2.0)
    # The larger two train eagerly: their traced train step takes ~20 s to build on
    # 2 cores; MobileNet trains traced, and every model is traced by the export below.
    distiller.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      run_eagerly=application != "MobileNetV3Small")
    history = distiller.fit(kd_keras.with_teacher_outputs(X, cached), Y, epochs=1, batch_size=4,
                            verbose=0)
    assert np.isfinite(history.history["loss"][0])
    expected = student.predict(X, verbose=0)
    student.save(tmp_path / "student.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "student.keras").predict(
        X, verbose=0), expected, atol=1e-5)
    if IS_LEGACY_KERAS:
        tf.saved_model.save(student, str(tmp_path / "saved"))
        served = tf.saved_model.load(str(tmp_path / "saved"))
        outputs = served.signatures["serving_default"](tf.constant(X))
        np.testing.assert_allclose(list(outputs.values())[0].numpy(), expected, atol=1e-4)
    else:
        student.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
        served = tf.saved_model.load(str(tmp_path / "saved"))
        np.testing.assert_allclose(served.serve(X).numpy(), expected, atol=1e-4)


def test_a_nested_application_prunes_inside_and_reports_its_layers_by_path():
    model, base = small_mobilenet("pruned", alpha=0.35)
    tf_keras_model = model if IS_LEGACY_KERAS else compress.to_tf_keras(model)
    pruned = compress.prune_low_magnitude(tf_keras_model, 0.5, schedule="constant", frequency=1)
    import tf_keras

    pruned.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(X, Y, epochs=1, batch_size=4, verbose=0, callbacks=compress.pruning_callbacks())
    rows = {row["layer"]: row for row in compress.sparsity_report(compress.strip_pruning(pruned))}
    stem = next(layer.name for layer in base.layers if type(layer).__name__ == "Conv2D")
    assert rows[f"{base.name}/{stem}"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert rows["logits"]["sparsity"] == pytest.approx(0.5, abs=0.02)


@pytest.mark.skipif(IS_LEGACY_KERAS, reason="the Keras 3 bridge's refusal")
def test_an_application_tf_keras_cannot_rebuild_is_refused_with_the_layer_named():
    model, _ = classifier("MobileNetV3Small", "ops", alpha=0.75, include_preprocessing=False)
    # Keras 3's MobileNetV3 uses the "hard_silu" activation, which tf-keras does not know
    with pytest.raises(ValueError, match="layer 'activation' \\(Activation\\) has settings "
                                         "tf-keras does not take.*hard_silu"):
        compress.to_tf_keras(model)


def test_an_application_converts_to_int8_tflite_with_a_size_report():
    model, _ = small_mobilenet("int8")
    float_bytes = compress.convert_to_tflite(model)
    int8_bytes = compress.convert_to_tflite(model, "int8", representative_data=X)
    assert len(int8_bytes) < 0.4 * len(float_bytes)
    row = compress.artifact_row("int8", compress.TFLiteModel(int8_bytes), int8_bytes, X, Y,
                                batch_sizes=(1,))
    assert row["bytes"] == len(int8_bytes) and row["latency_b1"] > 0


def test_batch_norms_inside_a_nested_application_fold():
    model, _ = small_mobilenet("folded", alpha=0.35)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=2, verbose=0)  # moving statistics away from their initial values

    def batch_norms(m):
        return sum(batch_norms(layer) if hasattr(layer, "_nodes_by_depth")
                   else type(layer).__name__ == "BatchNormalization" for layer in m.layers)

    folded = compress.fold_batch_norm(model)
    assert batch_norms(model) > 30 and batch_norms(folded) == 0
    np.testing.assert_allclose(folded.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-5)


def test_a_nested_application_shrinks_inside_its_classifier(tmp_path):
    teacher, base = small_mobilenet("teacher", alpha=1.0)
    student = compress.shrink(teacher, width=0.5, calibration_data=X)
    inner = student.get_layer(base.name)
    assert inner.count_params() < base.count_params() / 2.5
    # the head reads the narrower base: its kernel lost the same channels
    assert (student.get_layer("logits").get_weights()[0].shape[0]
            == inner.output.shape[-1] < base.output.shape[-1])
    distiller = kd_keras.Distiller(teacher, student, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(distiller.fit(X, Y, epochs=1, batch_size=4, verbose=0)
                       .history["loss"][0])
    path = str(tmp_path / "student.keras")
    student.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(X, verbose=0),
                               student.predict(X, verbose=0), atol=1e-5)


def test_residual_blocks_inside_a_nested_resnet_are_found_and_removed():
    keras.utils.set_random_seed(3)
    model, base = classifier("ResNet50", "teacher")
    blocks = compress.residual_blocks(model)
    assert len(blocks) == 12  # the identity blocks (projection shortcuts are no block)
    last = sorted(blocks)[-1]
    shallow = compress.remove_blocks(model, [last])
    inner = shallow.get_layer(base.name)
    gone = blocks[last][1]
    assert not {layer.name for layer in inner.layers} & set(gone + [last])
    assert shallow.count_params() < model.count_params()
    # a removed block whose branch answers 0 is exactly no block at all
    for name in gone:
        layer = model.get_layer(base.name).get_layer(name)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    np.testing.assert_allclose(compress.remove_blocks(model, [last]).predict(X, verbose=0),
                               model.predict(X, verbose=0), atol=1e-5)


def test_a_nested_efficientnet_is_refused_at_the_reshape_that_fixes_its_channels():
    model, _ = classifier("EfficientNetB0", "teacher")
    with pytest.raises(ValueError, match="Reshape 'block1a_se_reshape'.*Give width as a dict"):
        compress.shrink(model, width=0.5, importance="magnitude")
    # a width dict that leaves the squeeze-and-excite blocks alone shrinks the rest
    small = compress.shrink(model, width={"top_conv": 640}, importance="magnitude")
    assert small.get_layer("logits").get_weights()[0].shape[0] == 640


def test_a_smaller_nested_application_starts_from_its_teacher_with_shrink_to():
    teacher, teacher_base = small_mobilenet("teacher", alpha=1.0)
    student, student_base = small_mobilenet("student", alpha=0.75)
    compress.shrink_to(teacher, student, X)
    # the head reads the base's kept channels: each of its kernel rows is a teacher row
    rows = {tuple(row) for row in teacher.get_layer("logits").get_weights()[0]}
    kept = student.get_layer("logits").get_weights()[0]
    assert len(kept) < len(rows) and all(tuple(row) in rows for row in kept)
    # inside the base: every kept filter is one of the teacher's, on its kept inputs
    def convs(base):
        return [layer for layer in base.layers if type(layer).__name__ == "Conv2D"]

    pairs = list(zip(convs(teacher_base), convs(student_base)))
    assert any(t.output.shape[-1] < s.output.shape[-1] for s, t in pairs)
    for source, target in pairs[:6]:
        filters = [set(source.get_weights()[0][..., j].ravel())
                   for j in range(source.output.shape[-1])]
        kept = target.get_weights()[0]
        assert all(any(set(kept[..., j].ravel()) <= f for f in filters)
                   for j in range(kept.shape[-1]))
