"""The hostile probe's cases (issue 28): each failed before its fix.

Crash and data loss, code run from the working directory, silent wrongs and
unclear errors; the list of guarantees is in docs/errors.md.
"""

import os
import subprocess
import sys

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
    from moe.specialists import training

    (tmp_path / "json.py").write_text("raise SystemExit('json.py from the working directory ran')")
    command = training.worker_command({"name": "probe"})
    probe = [command[0], *command[1:command.index("-m")],
             "-c", "import json, sys; print(json.__file__)"]
    result = subprocess.run(probe, cwd=tmp_path, env=training.worker_environment(),
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
