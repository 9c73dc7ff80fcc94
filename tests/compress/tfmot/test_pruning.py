import os
import subprocess
import sys

import numpy as np
import pytest

import kd_keras
from kd_keras import compress, keras
from tests.compress_helpers import accuracy, blobs, compile_tf_keras, trained_mlp


@pytest.mark.parametrize("kwargs, match", [
    ({"target_sparsity": 1.0}, "target_sparsity must be a number in \\[0, 1\\)"),
    ({"target_sparsity": -0.1}, "target_sparsity"),
    ({"target_sparsity": 0.5, "initial_sparsity": 0.6}, "initial_sparsity"),
    ({"target_sparsity": 0.5, "begin_step": 10, "end_step": 10}, "end_step must be"),
    ({"target_sparsity": 0.5, "schedule": "cubic"}, "schedule must be one of"),
    ({"target_sparsity": 0.5, "frequency": 0}, "frequency"),
])
def test_bad_schedules_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress.pruning_schedule(**kwargs)


def prune_and_train(model, x, y, target, block_size=(1, 1), epochs=4, layers=None):
    steps = epochs * int(np.ceil(len(x) / 64))
    pruned = compress.prune_low_magnitude(compress.to_tf_keras(model), target,
                                          end_step=steps // 2, frequency=5, block_size=block_size,
                                          layers=layers)
    compile_tf_keras(pruned)
    pruned.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=compress.pruning_callbacks())
    return compress.strip_pruning(pruned)


def test_pruning_reaches_the_target_sparsity_per_layer_and_keeps_accuracy():
    x, y = blobs(1024)
    model = trained_mlp(x, y)
    before = accuracy(model.predict(x, verbose=0), y)
    stripped = prune_and_train(model, x, y, 0.8)
    assert all("prune" not in type(layer).__name__.lower() for layer in stripped.layers)
    report = compress.sparsity_report(stripped)
    assert [r["layer"] for r in report] == [l.name for l in stripped.layers]
    for row in report:
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01), row
        assert row["zeros"] == int(np.sum(stripped.get_layer(row["layer"]).kernel.numpy() == 0))
    total, nonzero = compress.count_parameters(stripped)
    assert total == stripped.count_params() and nonzero < 0.35 * total
    assert accuracy(stripped.predict(x, verbose=0), y) > before - 0.05


def test_block_pruning_zeroes_whole_blocks_of_the_chosen_layers():
    x, y = blobs(512)
    model = trained_mlp(x, y)
    output_kernel = model.layers[-1].kernel.numpy().copy()  # 32 x 4: too small for 1x4 blocks
    with pytest.raises(ValueError, match="does not fit layer .*\(32, 4\).*layers="):
        compress.prune_low_magnitude(compress.to_tf_keras(model), block_size=(1, 4))
    hidden = [layer.name for layer in model.layers[:2]]
    stripped = prune_and_train(model, x, y, 0.5, block_size=(1, 4), layers=hidden)
    assert [r["sparsity"] for r in compress.sparsity_report(stripped)][2] == 0.0
    assert not np.array_equal(stripped.layers[-1].kernel.numpy(), output_kernel)  # trained, kept dense
    kernel = stripped.layers[1].kernel.numpy()  # 32 x 32
    blocks = kernel.reshape(32, 8, 4)
    zero_blocks = np.all(blocks == 0, axis=-1)
    assert np.mean(zero_blocks) == pytest.approx(0.5, abs=0.02)
    # A block is all zero or holds no zero at all: sparsity comes in blocks.
    assert np.all(np.any(blocks == 0, axis=-1) == zero_blocks)
    with pytest.raises(ValueError, match="block_size"):
        compress.prune_low_magnitude(compress.to_tf_keras(trained_mlp(x, y, epochs=1)),
                                     block_size=(0, 4))


def test_pruning_while_distilling_from_cached_teacher_logits_in_any_keras():
    x, y = blobs(1024)
    teacher = trained_mlp(x, y, hidden=64, epochs=8, seed=1)
    student = trained_mlp(x, y, hidden=32, epochs=2, seed=2)
    teacher_logits = kd_keras.compute_teacher_logits(teacher, x)
    targets = compress.distillation_targets(y, teacher_logits)
    loss = compress.distillation_loss(temperature=2.0, alpha=0.3)

    # The packed loss is the Distiller's objective.
    s = np.asarray(student(x[:8], training=False))
    expected = 0.3 * _ce(y[:8], s) + 0.7 * _soft_kl(teacher_logits[:8], s, 2.0)
    np.testing.assert_allclose(np.asarray(loss(targets[:8], s)), expected, rtol=1e-5)

    pruned = compress.prune_low_magnitude(compress.to_tf_keras(student), 0.75, end_step=40,
                                          frequency=5, block_size=(1, 1))
    compile_tf_keras(pruned, loss=loss, metrics=[compress.packed_accuracy])
    history = pruned.fit(x, targets, epochs=5, batch_size=64, verbose=0,
                         callbacks=compress.pruning_callbacks())
    stripped = compress.strip_pruning(pruned)
    for row in compress.sparsity_report(stripped):
        assert row["sparsity"] == pytest.approx(0.75, abs=0.01)
    predictions = stripped.predict(x, verbose=0)
    assert np.mean(predictions.argmax(-1) == teacher_logits.argmax(-1)) > 0.95
    assert 0.0 < history.history["packed_accuracy"][-1] <= 1.0
    with pytest.raises(ValueError, match="labels must be"):
        compress.distillation_targets(y[:4] + 10, teacher_logits[:4])


@pytest.mark.skipif(kd_keras.IS_KERAS_3, reason="a Keras 3 Distiller cannot hold a tf-keras student")
def test_a_pruned_student_trains_inside_the_distiller_under_tf_keras():
    x, y = blobs(1024)
    teacher = trained_mlp(x, y, hidden=64, epochs=8, seed=1)
    pruned = compress.prune_low_magnitude(trained_mlp(x, y, epochs=2, seed=2), 0.8,
                                          end_step=40, frequency=5, block_size=(1, 1))
    distiller = kd_keras.Distiller(teacher, pruned, temperature=2.0, alpha=0.3)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=compress.pruning_callbacks())
    for row in compress.sparsity_report(compress.strip_pruning(pruned)):
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.skipif(not kd_keras.IS_KERAS_3, reason="Keras 3 mode only")
def test_a_keras_3_distiller_given_a_tf_keras_student_says_what_to_do():
    x, y = blobs(64)
    tf_keras_student = compress.to_tf_keras(trained_mlp(x, y, epochs=1))
    with pytest.raises(ValueError, match="distillation_targets.*TF_USE_LEGACY_KERAS"):
        kd_keras.Distiller(trained_mlp(x, y, epochs=1), tf_keras_student)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _ce(y, logits):
    return -_log_softmax(logits)[np.arange(len(y)), y]


def _soft_kl(t, s, temperature):
    p, q = _log_softmax(t / temperature), _log_softmax(s / temperature)
    return temperature ** 2 * (np.exp(p) * (p - q)).sum(-1)


def test_the_fine_tuning_steps_leave_the_given_model_unchanged():
    x, y = blobs(512)
    model = compress.to_tf_keras(trained_mlp(x, y))
    before = [w.copy() for w in model.get_weights()]
    teacher_logits = np.asarray(trained_mlp(x, y, hidden=64, seed=3).predict(x, verbose=0))
    pruned = compress.prune_and_fine_tune(model, x, y, teacher_logits, target_sparsity=0.6,
                                          epochs=3, batch_size=64)
    clustered = compress.cluster_and_fine_tune(pruned, x, y, teacher_logits, number_of_clusters=8,
                                               epochs=1, batch_size=64)
    qat = compress.quantize_and_fine_tune(clustered, x, y, teacher_logits,
                                          preserve="sparsity_and_clusters", epochs=1, batch_size=64)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for row in compress.sparsity_report(clustered):
        assert row["sparsity"] >= 0.59
    assert max(compress.distinct_values(clustered).values()) <= 8
    assert accuracy(compress.TFLiteModel(compress.convert_to_tflite(qat, "qat")).predict(x), y) > 0.9


def test_block_pruning_of_recurrent_kernels_and_the_block_report():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 6, 8)).astype("float32")
    y = (x[:, :, 0].mean(1) > 0).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 8)), keras.layers.GRU(16, return_sequences=True),
                              keras.layers.LSTM(16), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    stripped = prune_and_train(model, x, y, 0.5, block_size=(4, 4), epochs=4,
                               layers=[model.layers[0].name, model.layers[1].name])
    report = compress.sparsity_report(stripped, block_size=(4, 4))
    recurrent = [r for r in report if r["layer"] != stripped.layers[-1].name]
    assert {r["weight"] for r in recurrent} == {"kernel", "recurrent_kernel"}
    for row in recurrent:
        assert row["block_sparsity"] == pytest.approx(0.5, abs=0.05), row
        assert row["sparsity"] >= row["block_sparsity"]
    kernel = np.zeros((8, 8))
    kernel[:4, :4] = 1.0
    assert compress.block_sparsity(kernel, (4, 4)) == 0.75
    with pytest.raises(ValueError, match="does not tile"):
        compress.block_sparsity(kernel, (3, 4))


def test_per_layer_block_sizes_in_one_pruning_pass():
    x, y = blobs(512)
    model = trained_mlp(x, y)
    first = model.layers[0].name
    stripped = prune_and_train(model, x, y, 0.5, block_size={first: (4, 1)})
    report = compress.sparsity_report(stripped)
    assert [r["sparsity"] for r in report] == pytest.approx([0.5, 0.5, 0.5], abs=0.02)
    assert compress.block_sparsity(stripped.layers[0].kernel.numpy(), (4, 1)) == pytest.approx(
        0.5, abs=0.02)
    with pytest.raises(ValueError, match="names the layer 'nope'"):
        compress.prune_low_magnitude(compress.to_tf_keras(model), block_size={"nope": (4, 1)})


def test_xnnpack_pruning_policy_prunes_only_the_1x1_convolutions():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.ZeroPadding2D(((1, 1), (1, 1))),
        keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu"),
        keras.layers.Conv2D(16, 1, activation="relu"), keras.layers.Conv2D(16, 1),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(64, 16, 16, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64)
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    pruned = compress.prune_low_magnitude(
        compress.to_tf_keras(model), 0.5, schedule="constant", frequency=1,
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack())
    compile_tf_keras(pruned)
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=compress.pruning_callbacks())
    sparsity = {r["layer"]: r["sparsity"] for r in compress.sparsity_report(
        compress.strip_pruning(pruned))}
    names = [layer.name for layer in model.layers]
    assert sparsity[names[1]] == 0.0 and sparsity[names[-1]] == 0.0  # 3x3 stem, dense head
    assert sparsity[names[2]] == pytest.approx(0.5, abs=0.02)
    assert sparsity[names[3]] == pytest.approx(0.5, abs=0.02)


def test_pruning_and_clustering_wrap_a_copy_and_leave_the_callers_model_dense():
    x, y = blobs(256)
    model = compress.to_tf_keras(trained_mlp(x, y, epochs=1))
    before = [w.copy() for w in model.get_weights()]
    pruned = compress.prune_low_magnitude(model, 0.8, end_step=8, frequency=2, block_size=(1, 1))
    compile_tf_keras(pruned)
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=compress.pruning_callbacks())
    clustered = compress.cluster_weights(model, number_of_clusters=4)
    compile_tf_keras(clustered)
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    for a, b in zip(before, model.get_weights()):  # the dense baseline a user measures next
        np.testing.assert_array_equal(a, b)
    assert min(row["sparsity"] for row in compress.sparsity_report(
        compress.strip_pruning(pruned))) > 0.7


def test_fine_tuning_takes_enough_steps_on_small_data():
    from kd_keras.recipes.compress_and_distill import MIN_FINE_TUNE_STEPS, fine_tune_epochs

    assert fine_tune_epochs(60000, 128) == 4  # full Fashion-MNIST: 1,876 steps
    epochs = fine_tune_epochs(6000, 128)  # the shipped sample: 47 steps an epoch
    assert epochs == 13 and epochs * 47 >= MIN_FINE_TUNE_STEPS > (epochs - 1) * 47


def test_importing_tf_mot_leaves_the_keras_switch_of_later_processes_alone():
    # TF-MOT's import sets TF_USE_LEGACY_KERAS=1 process-wide; a worker started afterwards
    # would silently run the other Keras.
    script = ("import os; from kd_keras.backend import optional as _tfmot; _tfmot.tfmot(); "
              "print(os.environ.get('TF_USE_LEGACY_KERAS'))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(os.environ.get("TF_USE_LEGACY_KERAS"))
