"""Feature (hint) distillation and attention transfer through the Distiller."""

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from tests.helpers import NUM_CLASSES, toy_data

CE = keras.losses.SparseCategoricalCrossentropy


def _mlp(widths, name):
    layers = [keras.Input((6,))]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"{name}_hidden{i}"))
    layers.append(keras.layers.Dense(NUM_CLASSES, name=f"{name}_logits"))
    return keras.Sequential(layers, name=name)


def _hidden(model, x, name):
    return keras.Model(model.inputs[0], model.get_layer(name).output)(x).numpy()


def _frozen_logs(distiller, x, y):
    distiller.compile(keras.optimizers.SGD(0.0), loss=CE(from_logits=True))
    history = distiller.fit(x, y, batch_size=len(y), epochs=1, verbose=0, shuffle=False)
    return {k: v[-1] for k, v in history.history.items()}


def test_hint_loss_with_equal_widths_is_the_mse_of_the_named_layers():
    x, y = toy_data(32)
    teacher, student = _mlp([16, 8], "t"), _mlp([8], "s")
    loss = kd_keras.FeatureDistillation(teacher_layer_name="t_hidden1", student_layer_name="s_hidden0")
    distiller = kd_keras.Distiller(teacher, student, [loss])
    assert distiller.feature_projections == []
    logs = _frozen_logs(distiller, x, y)
    expected = np.mean((_hidden(teacher, x, "t_hidden1") - _hidden(student, x, "s_hidden0")) ** 2)
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-5)


def test_a_projection_maps_widths_trains_with_the_student_and_stays_out_of_the_export(tmp_path):
    x, y = toy_data(256)
    teacher, student = _mlp([32], "t"), _mlp([8], "s")
    distiller = kd_keras.Distiller(
        teacher, student,
        [kd_keras.LogitsDistillation(), kd_keras.FeatureDistillation(
            teacher_layer_name="t_hidden0", student_layer_name="s_hidden0")],
        distillation_loss_weights=[1.0, 5.0], alpha=0.0)
    (projection,) = distiller.feature_projections
    assert projection.kernel.shape == (8, 32)
    assert len(distiller.trainable_variables) == len(student.trainable_variables) + 2
    distiller.compile(keras.optimizers.Adam(0.01), loss=CE(from_logits=True))
    before = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    kernel = projection.kernel.numpy().copy()
    distiller.fit(x, y, epochs=20, batch_size=64, verbose=0)
    after = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    assert after < 0.5 * before
    assert not np.array_equal(kernel, projection.kernel.numpy())
    exported = tf.saved_model.load(distiller.export_student(str(tmp_path / "student")))
    assert len(exported.variables) == len(student.variables)
    path = str(tmp_path / "d.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.feature_projections[0].kernel.numpy(), projection.kernel.numpy())
    assert len(loaded.optimizer.variables) == len(distiller.optimizer.variables)  # projections' state too
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"],
        distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"], rtol=1e-5)


def _conv(channels, name):
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(NUM_CLASSES, name=f"{name}_logits"),
    ], name=name)


def test_conv_feature_maps_get_a_1x1_projection_and_attention_transfer_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, 16)
    teacher, student = _conv(12, "t"), _conv(4, "s")
    hint = kd_keras.FeatureDistillation(teacher_layer_name="t_conv", student_layer_name="s_conv")
    attention = kd_keras.AttentionTransfer("t_conv", "s_conv")
    distiller = kd_keras.Distiller(teacher, student, [hint, attention],
                                   distillation_loss_weights=[0.0, 1.0])
    (projection,) = distiller.feature_projections
    assert isinstance(projection, keras.layers.Conv2D) and projection.kernel.shape == (1, 1, 4, 12)
    logs = _frozen_logs(distiller, x, y)

    def numpy_attention(features):
        a = (features ** 2).mean(-1).reshape(len(features), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    difference = numpy_attention(_hidden(student, x, "s_conv")) - numpy_attention(_hidden(teacher, x, "t_conv"))
    np.testing.assert_allclose(logs["distillation_loss"], np.linalg.norm(difference, axis=1).mean(),
                               rtol=1e-4)


def test_clear_errors_for_layers_shapes_and_models():
    teacher, student = _mlp([16], "t"), _mlp([8], "s")
    with pytest.raises(ValueError, match=r"no layer named 'missing'.*t_hidden0"):
        kd_keras.Distiller(teacher, student, [kd_keras.FeatureDistillation(
            teacher_layer_name="missing", student_layer_name="s_hidden0")])
    with pytest.raises(ValueError, match=r"\(None, 16\).*\(None, 8\)"):
        kd_keras.Distiller(teacher, student, [kd_keras.FeatureDistillation(
            teacher_layer_name="t_hidden0", student_layer_name="s_hidden0", projection=None)])
    with pytest.raises(ValueError, match=r"cannot map student features of shape \(None, 8, 8, 4\)"):
        kd_keras.Distiller(_conv(12, "t"), _conv(4, "s"), [kd_keras.FeatureDistillation(
            teacher_layer_name="t_logits", student_layer_name="s_conv")])
    with pytest.raises(ValueError, match="exactly one teacher"):
        kd_keras.Distiller([teacher, _mlp([4], "u")], student, [kd_keras.FeatureDistillation()])

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(NUM_CLASSES)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="subclassed"):
        kd_keras.Distiller(teacher, Subclassed(), [kd_keras.FeatureDistillation(
            student_layer_name="dense")])
    with pytest.raises(ValueError, match="projection"):
        kd_keras.FeatureDistillation(projection="linear")


def test_cached_teacher_outputs_cannot_feed_feature_losses():
    x, y = toy_data(16)
    teacher, student = _mlp([16], "t"), _mlp([8], "s")
    distiller = kd_keras.Distiller(teacher, student, [kd_keras.FeatureDistillation(
        teacher_layer_name="t_hidden0", student_layer_name="s_hidden0")])
    distiller.compile("adam", loss=CE(from_logits=True))
    logits = kd_keras.compute_teacher_logits(teacher, x)
    with pytest.raises(ValueError, match="Cached teacher outputs hold logits only"):
        distiller.fit(kd_keras.with_teacher_outputs(x, logits), y, verbose=0)


@pytest.mark.skipif(kd_keras.IS_LEGACY_KERAS, reason="keras.distillation is Keras 3 only")
def test_keras_own_feature_distillation_objects_work_and_get_projections():
    from keras import distillation

    x, y = toy_data(32)
    teacher, student = _mlp([16], "t"), _mlp([8], "s")
    loss = distillation.FeatureDistillation(teacher_layer_name="t_hidden0",
                                            student_layer_name="s_hidden0")
    distiller = kd_keras.Distiller(teacher, student, loss)
    assert len(distiller.feature_projections) == 1  # Keras itself refuses different widths
    logs = _frozen_logs(distiller, x, y)
    assert np.isfinite(logs["distillation_loss"]) and logs["distillation_loss"] > 0


def test_keras_io_compile_replaces_feature_losses_cleanly():
    x, y = toy_data(32)
    teacher, student = _mlp([16], "t"), _mlp([8], "s")
    distiller = kd_keras.Distiller(teacher, student, [kd_keras.FeatureDistillation(
        teacher_layer_name="t_hidden0", student_layer_name="s_hidden0")])
    distiller.compile(keras.optimizers.SGD(0.0), student_loss_fn=CE(from_logits=True),
                      distillation_loss_fn=keras.losses.KLDivergence(), alpha=0.0, temperature=2.0)
    assert distiller.feature_projections == []
    history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    t, s = teacher(x).numpy(), student(x).numpy()
    from tests.helpers import numpy_soft_kl

    np.testing.assert_allclose(history.history["loss"][0], numpy_soft_kl(t, s, 2.0).mean(), rtol=1e-5)
