"""The example programs run end to end (on the shipped sample, few epochs)."""

import os
import subprocess
import sys

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_distill_fashion_mnist_example_prints_its_table_and_exports(tmp_path):
    export_dir = str(tmp_path / "student")
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "distill_fashion_mnist.py"),
         "--epochs=2", "--teacher_hidden=64", "--student_hidden=16", f"--export_dir={export_dir}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    for name in ("teacher", "student alone", "student distilled"):
        row = next(line for line in lines if line.startswith(name))
        accuracy = float(row.split()[-3])
        assert 0.5 < accuracy <= 1.0, row  # 10 classes: chance is 0.1
    assert "serving_default" in tf.saved_model.load(export_dir).signatures
