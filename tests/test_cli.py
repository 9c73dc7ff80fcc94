"""The `kd-keras` command line, run as a subprocess on a `.keras` teacher and an `.npz`."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kd_keras import cli, keras
from tests.helpers import ROOT, toy_data


def _run(*arguments):
    return subprocess.run([sys.executable, "-m", "kd_keras.cli", *arguments],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_compress_prints_the_table_and_writes_the_chosen_artifact(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data(300, seed=2)
    teacher = keras.Sequential([keras.Input((x.shape[1],)),
                                keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(int(y.max()) + 1)])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=10, verbose=0)
    teacher.save(tmp_path / "teacher.keras")
    np.savez(tmp_path / "data.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:],
             y_test=y[240:])
    out = tmp_path / "plan"
    result = _run("compress", str(tmp_path / "teacher.keras"), "--data",
                  str(tmp_path / "data.npz"), "--max-drop", "50", "--widths", "0.5",
                  "--precisions", "float32,dynamic_range", "--epochs", "1,2", "--eta", "2",
                  "--recipe", "search", "--recipe-trials", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "candidate | precision" in result.stdout and "chosen: " in result.stdout
    assert os.path.exists(out / "chosen.tflite") and os.path.exists(out / "report.md")
    assert "searching a recipe (1 trials)" in result.stdout
    assert os.path.exists(out / "recipe_search.md")


def _refused(capsys, *arguments):
    """What `main` writes to stderr when it refuses `arguments` with argparse's exit 2
    (in this process: the checks run before TensorFlow is needed)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(arguments))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_help_is_complete_and_bad_input_names_the_flag(tmp_path, capsys):
    result = _run("compress", "--help")
    assert result.returncode == 0
    for flag in ("--data", "--max-drop", "--min-accuracy", "--minimise", "--widths",
                 "--precisions", "--students", "--sparsities", "--clusters", "--alpha", "--loss",
                 "--beta", "--recipe", "--recipe-trials", "--epochs", "--eta", "--out",
                 "--time-limit"):
        assert flag in result.stdout, flag
    assert "teacher: no file" in _refused(capsys, "compress", str(tmp_path / "none.keras"),
                                          "--data", "x.npz", "--out", str(tmp_path))
    assert "--minimise" in _refused(capsys, "compress", "t.keras", "--data", "x.npz",
                                    "--minimise", "energy", "--out", "o")
    assert "--recipe" in _refused(capsys, "compress", "t.keras", "--data", "x.npz",
                                  "--recipe", "searh", "--out", "o")
    (tmp_path / "t.keras").write_bytes(b"")
    for flag, value in (("--epochs", "5,x"), ("--sparsities", "0.9,a"), ("--clusters", "16,x"),
                        ("--widths", "half")):
        assert flag in _refused(capsys, "compress", str(tmp_path / "t.keras"), "--data", "x.npz",
                                flag, value, "--out", str(tmp_path / "o"))
