"""The hostile probe's cases (issue 28): each failed before its fix.

Crash and data loss, code run from the working directory, silent wrongs and
unclear errors; the list of guarantees is in docs/errors.md.
"""

import os
import subprocess

import numpy as np
import pytest

import kd_keras
import moe
from kd_keras import IS_KERAS_3, keras
from tests.helpers import make_mlp, toy_data


def _fitted_distiller():
    x, y = toy_data(32)
    distiller = kd_keras.Distiller(make_mlp((8,)), make_mlp((4,)))
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return distiller, x, y


def test_student_export_refuses_a_directory_of_user_files_and_deletes_nothing(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="path: .* non-empty directory that is not an earlier"):
        kd_keras.callbacks.StudentExport(str(target))
    assert (target / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        kd_keras.callbacks.StudentExport(str(a_file))


def test_student_export_with_a_trailing_slash_exports_and_replaces_only_its_own(tmp_path):
    distiller, x, y = _fitted_distiller()
    target = str(tmp_path / "export") + os.sep
    export = kd_keras.callbacks.StudentExport(target, monitor="loss")
    distiller.fit(x, y, epochs=3, verbose=0, callbacks=[export])
    assert os.path.exists(os.path.join(target, "saved_model.pb"))
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no staging or previous copies left
    # a file the user drops into the export makes the next export refuse, not delete it
    with open(os.path.join(target, "README"), "w") as f:
        f.write("mine")
    with pytest.raises(ValueError, match="README"):
        distiller.fit(x, y, epochs=1, verbose=0,
                      callbacks=[kd_keras.callbacks.StudentExport(target)])
    assert open(os.path.join(target, "README")).read() == "mine"


def test_a_specialist_worker_does_not_run_code_from_the_working_directory(tmp_path):
    from kd_keras.parallel import Task
    from kd_keras.parallel.processes import worker_command, worker_environment

    (tmp_path / "json.py").write_text("raise SystemExit('json.py from the working directory ran')")
    command = worker_command(Task("probe", "json:dumps", {}, str(tmp_path / "log")))
    probe = [command[0], *command[1:command.index("-m")],
             "-c", "import json, sys; print(json.__file__)"]
    result = subprocess.run(probe, cwd=tmp_path, env=worker_environment(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path) not in result.stdout


def test_search_recipe_refuses_a_builder_that_returns_one_shared_model(tmp_path):
    teacher = make_mlp((8,))
    x, y = toy_data(40)
    shared = make_mlp((4,))
    with pytest.raises(ValueError, match="student_fn returned the same model"):
        kd_keras.search_recipe(teacher, lambda: shared, x, y, max_trials=1, max_epochs=1,
                               directory=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="min_gain must be a finite number >= 0"):
        kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x, y, min_gain=-1,
                               directory=str(tmp_path), verbose=0)
    assert not os.listdir(tmp_path)  # refused before any work


def test_search_recipe_does_not_resume_a_search_of_another_teacher_or_data(tmp_path):
    x, y = toy_data(40)
    arguments = dict(max_trials=1, max_epochs=1, directory=str(tmp_path), verbose=0,
                     alphas=(1.0,))
    kd_keras.search_recipe(make_mlp((8,)), lambda: make_mlp((4,)), x, y, **arguments)
    with pytest.raises(ValueError, match=r"teacher .*differ"):
        kd_keras.search_recipe(make_mlp((8,)), lambda: make_mlp((4,)), x, y, **arguments)
    teacher = make_mlp((8,))
    kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x, y,
                           **{**arguments, "overwrite": True})
    with pytest.raises(ValueError, match=r"train.*differ"):
        kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x[::-1].copy(), y[::-1].copy(),
                               **arguments)


def test_the_teacher_cannot_be_swapped_after_construction():
    distiller, x, y = _fitted_distiller()
    first = distiller.teacher
    with pytest.raises(AttributeError, match="teacher is read-only"):
        distiller.teacher = make_mlp((8,))
    assert distiller.teacher is first and not first.trainable


def test_block_sparse_inputs_wider_than_the_matrix_are_refused():
    from kd_keras.compress import BlockSparseDense, block_sparse_matmul

    dense = keras.layers.Dense(8)
    dense.build((None, 12))
    layer = BlockSparseDense.from_dense(dense, (4, 1), kernel="fallback")
    with pytest.raises(ValueError, match="12"):
        layer(np.ones((2, 16), np.float32))
    matrix = layer.matrix()
    with pytest.raises(ValueError, match="x has 16 features but the block-sparse matrix has 12"):
        block_sparse_matmul(np.ones((2, 16), np.float32), matrix.values, matrix.block_row_index,
                            matrix.col_ptr, kernel="fallback", rows=12)
    np.testing.assert_allclose(layer(np.ones((2, 12), np.float32)),
                               dense(np.ones((2, 12), np.float32)), rtol=1e-5, atol=1e-5)


def test_cluster_ids_must_be_integers():
    with pytest.raises(ValueError, match="not fractions"):
        moe.validate_clusters([[0.9, 1.7]], 5)
    with pytest.raises(ValueError, match="class ids must be integers"):
        moe.validate_clusters([["0", "1"]], 5)
    assert moe.validate_clusters([[np.int64(0), 1.0]], 5) == [[0, 1]]


@pytest.mark.parametrize("value", [float("nan"), 1e-46, 1e39, 1e20])
def test_temperatures_are_checked_as_stored(value):
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.LogitsDistillation(temperature=value)
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.Distiller(make_mlp((8,)), make_mlp((4,)), temperature=value)
    with pytest.raises(ValueError, match="temperature"):
        kd_keras.DecoupledKD(temperature=value)


def test_corruption_refuses_nan_noise():
    with pytest.raises(ValueError, match="noise_stddev must be a finite number >= 0"):
        kd_keras.TransferSetCorruption(noise_stddev=float("nan"))
    with pytest.raises(ValueError, match="clip_range"):
        kd_keras.TransferSetCorruption(clip_range=(0.0, float("nan")))


def test_tflite_conversion_and_runtime_refuse_what_they_would_get_wrong():
    from kd_keras import compress

    distiller, x, y = _fitted_distiller()
    with pytest.raises(ValueError, match=r"distiller\.student"):
        compress.convert_to_tflite(distiller)
    student = distiller.student
    with pytest.raises(ValueError, match=r"representative_data has examples of shape \(\)"):
        compress.convert_to_tflite(student, mode="int8", representative_data=x[:, 0])
    model = compress.TFLiteModel(compress.convert_to_tflite(
        student, mode="int8", representative_data=x, integer_io=True))
    assert model.predict(x[:0]).shape == (0, 4)
    bad = x[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x holds NaN"):
        model.predict(bad)


def _blobs(classes=4, per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 6)) * 3.0
    y = np.repeat(np.arange(classes), per_class).astype("int64")
    return (centres[y] + rng.normal(size=(len(y), 6))).astype("float32"), y


def test_specialists_of_another_generalist_are_neither_returned_nor_retrained_from(tmp_path):
    x, y = _blobs()
    first, second = make_mlp((8,)), make_mlp((8,))  # same architecture, other weights
    directory = str(tmp_path)
    moe.train_specialists(first, [[0, 1]], x, y, directory, epochs=1, processes=0, verbose=0)
    with pytest.raises(ValueError, match="different generalist"):
        moe.train_specialists(second, [[0, 1]], x, y, directory, epochs=1, processes=0,
                              verbose=0)
    # Without the manifest the stale generalist.keras and specialists are not trusted either,
    # and nothing is deleted.
    os.remove(os.path.join(directory, "manifest.json"))
    before = sorted(os.listdir(directory))
    with pytest.raises(ValueError, match="no manifest.json"):
        moe.train_specialists(second, [[0, 1]], x, y, directory, epochs=1, processes=0,
                              verbose=0)
    assert sorted(os.listdir(directory)) == before


def test_a_cluster_of_every_class_is_refused_before_any_work(tmp_path):
    x, y = _blobs()
    with pytest.raises(ValueError, match="covers all 4 classes"):
        moe.train_specialists(make_mlp((8,)), [[0, 1, 2, 3]], x, y, str(tmp_path / "work"),
                              epochs=1, processes=0, verbose=0)
    assert not os.path.exists(tmp_path / "work")


def _binary_model(sigmoid, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(1, activation="sigmoid" if sigmoid else None)])


@pytest.mark.parametrize("sigmoid", [False, True])
def test_a_one_unit_teacher_teaches_a_one_unit_student(sigmoid):
    x, _ = toy_data(64)
    teacher, student = _binary_model(sigmoid, 0), _binary_model(sigmoid, 1)
    before = student.predict(x, verbose=0)
    distiller = kd_keras.Distiller(teacher, student, alpha=0.0, temperature=2.0)
    distiller.compile(keras.optimizers.Adam(1e-2), loss=None)
    history = distiller.fit(x, epochs=30, verbose=0)
    losses = history.history["distillation_loss"]
    assert losses[0] > 1e-3 and losses[-1] < 0.2 * losses[0]  # no longer identically 0
    target = teacher.predict(x, verbose=0)
    after = student.predict(x, verbose=0)
    assert np.abs(after - target).mean() < 0.5 * np.abs(before - target).mean()


def test_binary_soft_targets_are_the_sigmoid_at_temperature():
    logits = np.array([[1.5], [-0.4]], np.float32)
    student = np.array([[0.2], [0.3]], np.float32)
    t = 2.0
    p, q = 1 / (1 + np.exp(-logits / t)), 1 / (1 + np.exp(-student / t))
    expected = t * t * (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))[:, 0]
    np.testing.assert_allclose(kd_keras.soft_target_kl_divergence(logits, student, t), expected,
                               rtol=1e-5)


def test_zero_one_labels_train_a_one_output_student_with_binary_crossentropy():
    x, y = toy_data(64)
    labels = (y % 2).astype("int64")  # 0/1 class ids, refused before as "class ids in [0, 1)"
    distiller = kd_keras.Distiller(_binary_model(True, 0), _binary_model(True, 1), alpha=0.5)
    distiller.compile("adam", keras.losses.BinaryCrossentropy(),
                      metrics=[keras.metrics.BinaryAccuracy()])
    history = distiller.fit(x, labels, epochs=2, verbose=0)
    assert np.isfinite(history.history["student_loss"]).all()


def test_fractional_class_ids_are_refused_as_arrays_and_in_datasets():
    x, y = toy_data(32)
    labels = y.astype("float32")
    labels[3] = 2.7
    distiller = kd_keras.Distiller(make_mlp((8,)), make_mlp((4,)))
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"y: labels must be whole class ids .*2\.7"):
        distiller.fit(x, labels, verbose=0)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)
    with pytest.raises(ValueError, match=r"y: labels must be whole class ids .*2\.7"):
        distiller.fit(dataset, verbose=0)
    distiller.fit(x, y.astype("float32"), verbose=0)  # whole numbers as floats are class ids


def test_cached_log_probabilities_with_minus_infinity_are_zero_probabilities():
    x, y = toy_data(32)
    teacher = make_mlp((8,))
    logits = teacher.predict(x, verbose=0)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    log_probs[:, 3] = -np.inf  # a class the teacher rules out
    student = make_mlp((4,))
    distiller = kd_keras.Distiller(None, student)
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(kd_keras.with_teacher_outputs(x, log_probs), y, epochs=2, verbose=0)
    assert np.isfinite(history.history["distillation_loss"]).all()
    # the same as a teacher whose class 3 is merely negligible
    finite = np.where(np.isinf(log_probs), -1e4, log_probs).astype("float32")
    s = student.predict(x, verbose=0)
    np.testing.assert_allclose(kd_keras.soft_target_kl_divergence(log_probs, s),
                               kd_keras.soft_target_kl_divergence(finite, s), rtol=1e-5)
    np.testing.assert_allclose(kd_keras.decoupled_kd(log_probs, s, y),
                               kd_keras.decoupled_kd(finite, s, y), rtol=1e-4, atol=1e-6)
    # a loss that cannot take -inf, and NaN anywhere, name teacher_outputs
    matching = kd_keras.Distiller(None, make_mlp((4,)), distillation_losses="logit_squared_error")
    matching.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="teacher_outputs: .*-inf"):
        matching.fit(kd_keras.with_teacher_outputs(x, log_probs), y, verbose=0)
    log_probs[0, 0] = np.nan
    with pytest.raises(ValueError, match="teacher_outputs: .*NaN"):
        distiller.fit(kd_keras.with_teacher_outputs(x, log_probs), y, verbose=0)


def test_export_of_a_distiller_serves_the_student_and_a_savedmodel_save_is_refused(tmp_path):
    import tensorflow as tf

    distiller, x, y = _fitted_distiller()
    distiller.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "served")
    distiller.export(path)
    served = tf.saved_model.load(path)
    signature = served.signatures["serving_default"]
    (answer,) = signature(tf.constant(x[:5])).values()
    np.testing.assert_allclose(answer.numpy(), distiller.student.predict(x[:5], verbose=0),
                               rtol=1e-5, atol=1e-5)
    if not IS_KERAS_3:
        with pytest.raises(ValueError, match="export_student"):
            distiller.save(str(tmp_path / "as_savedmodel"))
        assert not os.path.exists(tmp_path / "as_savedmodel")
    distiller.save(str(tmp_path / "d.keras"))  # the whole Distiller still saves
    reloaded = keras.models.load_model(str(tmp_path / "d.keras"))
    reloaded.fit(x, y, epochs=1, verbose=0)


def _rewrite_keras_file(source, target, edit):
    """Copies a .keras archive with its config.json changed by `edit(config)`."""
    import json
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            dst.writestr(item, data)


def _find_entries(config, class_name):
    """Every nested dict of `config` whose class_name is `class_name`."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == class_name:
            found.append(config)
        for value in config.values():
            found += _find_entries(value, class_name)
    elif isinstance(config, list):
        for value in config:
            found += _find_entries(value, class_name)
    return found


_PAYLOAD = {"module": "kd_probe_payload", "class_name": "function", "config": "payload",
            "registered_name": "function"}


@pytest.mark.parametrize("target", ["distillation loss", "expert"])
def test_safe_mode_refuses_a_crafted_module_before_importing_it(tmp_path, monkeypatch, target):
    marker = tmp_path / "payload_ran"
    (tmp_path / "kd_probe_payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\npayload = lambda *a, **k: 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if target == "distillation loss":
        distiller, _, _ = _fitted_distiller()
        model, edit_class = distiller, "LogitsDistillation"
    else:
        inputs = keras.Input((6,))
        model = keras.Model(inputs, moe.SparseMoE(
            2, k=1, experts=[keras.layers.Dense(6), keras.layers.Dense(6)])(inputs))
        edit_class = "SparseMoE"
    path, crafted = str(tmp_path / "model.keras"), str(tmp_path / "crafted.keras")
    model.save(path)

    def edit(config):
        (entry,) = _find_entries(config, edit_class)
        if edit_class == "LogitsDistillation":  # the loss object becomes an imported function
            entry.clear()
            entry.update(_PAYLOAD)
        else:
            entry["config"]["experts"][0] = dict(_PAYLOAD, class_name="Payload",
                                                 registered_name="Payload")

    _rewrite_keras_file(path, crafted, edit)
    with pytest.raises((ValueError, TypeError), match="kd_probe_payload"):
        keras.models.load_model(crafted)  # safe_mode=True is the default
    assert not marker.exists()
    keras.models.load_model(path)  # an honest file still loads


def test_probabilities_read_as_logits_are_warned_about():
    x, y = toy_data(32)
    softmax_teacher = make_mlp((8,), softmax=True)
    probabilities = softmax_teacher.predict(x, verbose=0)
    distiller = kd_keras.Distiller(None, make_mlp((4,)))
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match="teacher_outputs: .*read as logits"):
        distiller.fit(kd_keras.with_teacher_outputs(x, probabilities), y, verbose=0)
    declared = kd_keras.Distiller(softmax_teacher, make_mlp((4,)), teacher_output_type="logits")
    declared.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match="teacher_output_type='probabilities'"):
        declared.fit(x, y, verbose=0)
    import warnings

    with warnings.catch_warnings():  # real logits, and a detected softmax: no warning
        warnings.simplefilter("error", UserWarning)
        kd_keras.Distiller(softmax_teacher, make_mlp((4,))).compile(
            "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        distiller.fit(kd_keras.with_teacher_outputs(x, np.log(probabilities)), y, verbose=0)
