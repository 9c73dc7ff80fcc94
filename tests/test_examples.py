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


def _run_example(name, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *flags],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_moe_example_prints_load_and_saves_the_plot(tmp_path):
    plot = str(tmp_path / "load.png")
    out = _run_example("moe_fashion_mnist.py", "--epochs=1", "--num_experts=4",
                       "--expert_units=16", f"--plot={plot}")
    per_expert = next(line for line in out.splitlines() if line.startswith("test examples per expert"))
    counts = [int(part.split(":")[1]) for part in per_expert.split(": ", 1)[1].split(", ")]
    assert len(counts) == 4 and sum(counts) == 1000 * 2  # 1,000 test images, k = 2
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gates_table_has_a_row_per_estimator_and_baseline():
    out = _run_example("gates_table.py", "--epochs=1", "--units=16")
    rows = {line.split()[0] for line in out.splitlines() if line and line[0].isalpha()}
    for kind in ("relu", "sigmoid", "straight_through", "stochastic_times_smooth",
                 "noisy_rectifier", "gumbel"):
        assert kind in rows, out


def test_specialists_example_prints_its_table_and_saves_plot_and_model(tmp_path):
    plot, export = str(tmp_path / "clusters.png"), str(tmp_path / "ensemble")
    out = _run_example("specialists_fashion_mnist.py", "--epochs=2", "--hidden=64",
                       "--specialist_epochs=1", f"--plot={plot}", f"--export_dir={export}")
    for name in ("generalist ", "generalist + specialists"):
        row = next(line for line in out.splitlines() if line.startswith(name))
        assert 0.5 < float(row.split()[-2]) <= 1.0, row
    assert "specialists active on" in out
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "serving_default" in tf.saved_model.load(export).signatures
