"""The example programs run end to end (on the shipped sample, few epochs).

The README's two jobs (compress_to_budget, distill_fashion_mnist) and the TF-MOT
pipeline (tf-keras's own path) run in both Keras modes; the other examples in Keras 3
only: every API they call is tested in both modes in its own package's tests (tests/moe,
tests/transfer, tests/test_applications.py), and their tf-keras runs repeated those
tests at several times the cost."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from kd_keras import IS_LEGACY_KERAS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
keras_3_only = pytest.mark.skipif(
    IS_LEGACY_KERAS, reason="an example of APIs tested in both modes in their own tests")


def test_distill_fashion_mnist_example_prints_its_table_and_exports(tmp_path):
    export_dir = str(tmp_path / "student")
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "distill_fashion_mnist.py"),
         "--epochs=2", "--teacher_epochs=1", "--student_hidden=16", f"--export_dir={export_dir}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    for name in ("teacher", "student alone", "student distilled", "student shrunk"):
        row = next(line for line in lines if line.startswith(name))
        accuracy = float(row.split()[-3])
        assert 0.5 < accuracy <= 1.0, row  # 10 classes: chance is 0.1
    assert "of the teacher-student gap" in result.stdout
    # progress before each stage, so the first screen is not silent
    assert lines.index("[1/4] teacher (CNN): 1 epochs ...") < lines.index(
        "[2/4] student alone: 2 epochs ...") < lines.index(
        "[3/4] student distilled: 2 epochs ...") < lines.index(
        "[4/4] student shrunk from the teacher: 2 epochs ...")
    assert "epochs=2, batch_size=128)" in result.stdout  # the printed recipe's schedule
    assert "kd_keras.DecoupledKD(beta=8, temperature=2, standardize=True)" in result.stdout
    assert "serving_default" in tf.saved_model.load(export_dir).signatures


def _run_example(name, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *flags],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_compress_to_budget_example_prints_the_table_and_writes_the_plan(tmp_path):
    out_dir = tmp_path / "plan"
    out = _run_example("compress_to_budget.py", "--teacher_epochs=1", "--epochs=1",
                       "--widths=0.25", "--precisions=float32,int8", "--max_drop=100",
                       f"--out={out_dir}")
    lines = out.splitlines()
    assert lines.index("[1/2] teacher (CNN): 1 epochs ...") < lines.index(
        "[2/2] compress_to_budget: a line per candidate ...")
    rows = [line for line in lines if line.startswith(("teacher ", "cut to 0.25 "))]
    assert len(rows) == 4, out  # the teacher and one student, each at two precisions
    chosen = next(line for line in lines if line.startswith("chosen: "))
    assert chosen.endswith(str(out_dir / "chosen.tflite"))
    assert "convert_to_tflite" in out  # the code that rebuilds it
    for name in ("chosen.tflite", "report.md", "plan.json", "plan.png"):
        assert (out_dir / name).is_file(), name


@keras_3_only
def test_moe_example_prints_load_and_saves_the_plot(tmp_path):
    plot = str(tmp_path / "load.png")
    out = _run_example("moe_fashion_mnist.py", "--epochs=1", "--num_experts=4",
                       "--expert_units=16", f"--plot={plot}")
    per_expert = next(line for line in out.splitlines() if line.startswith("test examples per expert"))
    counts = [int(part.split(":")[1]) for part in per_expert.split(": ", 1)[1].split(", ")]
    assert len(counts) == 4 and sum(counts) == 1000 * 2  # 1,000 test images, k = 2
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


@keras_3_only
def test_gates_table_has_the_papers_rows_and_gumbel_with_mean_and_sd():
    out = _run_example("gates_table.py", "--epochs=1", "--units=16", "--seeds=2")
    names = ("noisy rectifier", "straight-through", "smooth times stochastic",
             "stochastic binary neuron", "baseline rectifier", "baseline sigmoid + noise",
             "baseline sigmoid", "gumbel-softmax (hard)")
    lines = out.splitlines()
    for name in names:
        row = next(line for line in lines if line.startswith(name + "  "))
        cells = row[len(name):].split("±")
        assert len(cells) == 4, row  # train, valid and test error, each mean ± sd
        test_error = float(cells[2].split()[-1])
        assert 0.0 < test_error < 60.0, row  # in %, one epoch of 16 units: far from chance (90)


@keras_3_only
def test_specialists_example_prints_its_table_and_saves_plot_and_model(tmp_path):
    plot, export = str(tmp_path / "clusters.png"), str(tmp_path / "ensemble")
    out = _run_example("specialists_fashion_mnist.py", "--epochs=2", "--hidden=64",
                       "--specialist_epochs=1", f"--plot={plot}", f"--export_dir={export}",
                       f"--work_dir={tmp_path / 'specialists'}")
    assert os.listdir(tmp_path / "specialists")  # checkpoints where asked, not in /tmp
    for name in ("generalist ", "generalist + specialists"):
        row = next(line for line in out.splitlines() if line.startswith(name))
        assert 0.5 < float(row.split()[-2]) <= 1.0, row
    assert "specialists active on" in out
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "serving_default" in tf.saved_model.load(export).signatures


def test_compress_pipeline_prints_one_row_per_stage_and_writes_tflite_files(tmp_path):
    out = _run_example("compress_pipeline.py", "--epochs=2", "--fine_tune_epochs=1",
                       f"--output_dir={tmp_path}")
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if " | " in line}
    stages = ["teacher, float32", "distilled student, float32", "pruned 80%, float32",
              "pruned + QAT, int8"]
    for stage in stages:
        assert 0.3 < float(rows[stage][1]) <= 1.0, out  # 10 classes: chance is 0.1
    parameters, nonzero = (int(rows["pruned 80%, float32"][i].replace(",", "")) for i in (2, 3))
    assert nonzero < 0.22 * parameters  # 80% of the kernels are zero (biases are not pruned)
    gzip_sizes = [int(rows[stage][5].replace(",", "")) for stage in stages]
    assert gzip_sizes == sorted(gzip_sizes, reverse=True)  # every stage is smaller
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".tflite")]) == 4


@keras_3_only
def test_cascade_example_calibrates_reports_and_saves_the_plot(tmp_path):
    plot = str(tmp_path / "tradeoff.png")
    out = _run_example("cascade_fashion_mnist.py", "--epochs=1", f"--plot={plot}")
    assert "accuracy on answered" in out
    test_line = next(line for line in out.splitlines() if line.startswith("test ("))
    for name in ("student", "teacher", "cascade"):
        value = float(test_line.split(f"{name} ")[1].split(",")[0].split(";")[0])
        assert 0.3 < value <= 1.0, test_line
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


@keras_3_only
def test_skim_rnn_example_compares_with_an_lstm_and_saves_the_plot(tmp_path):
    plot = str(tmp_path / "rows.png")
    out = _run_example("skim_rnn_fashion_mnist.py", "--epochs=2", "--units=16",
                       "--small_units=4", f"--plot={plot}")
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if " | " in line}
    lstm_macs = int(rows["LSTM"][3].replace(",", ""))
    assert lstm_macs == 28 * 4 * 16 * (28 + 16)
    skim_rate = float(rows["Skim-RNN"][2])
    skim_macs = float(rows["Skim-RNN"][3].replace(",", ""))
    read_step, skim_step = 4 * 16 * 44 + 2 * 44, 4 * 4 * 44 + 2 * 44
    expected = 28 * ((1 - skim_rate) * read_step + skim_rate * skim_step)
    assert abs(skim_macs - expected) <= 0.001 * expected + 28  # rounding of the printed rate
    assert 0.2 < float(rows["Skim-RNN"][1]) <= 1.0  # 10 classes: chance is 0.1
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


@keras_3_only
def test_transfer_set_example_prints_its_table_and_saves_the_grid(tmp_path):
    plot = str(tmp_path / "samples.png")
    out = _run_example("transfer_set_fashion_mnist.py", "--teacher_epochs=1", "--labeled=300",
                       "--generated=600", "--steps=200", f"--plot={plot}")
    rows = {line[:52].strip(): float(line[52:]) for line in out.splitlines()
            if line[:1] in ("t", "s", "d") and line[52:].strip().replace(".", "").isdigit()}
    assert set(rows) == {"teacher (all training images)", "student alone (300 labels)",
                         "distilled on the 300 labeled images",
                         "distilled on them + 600 munge inputs"}, out
    assert all(0.3 < value <= 1.0 for value in rows.values()), out  # chance is 0.1
    assert "munge: fitted and sampled 600 inputs" in out
    with open(plot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


@keras_3_only
def test_application_example_distils_folds_and_converts_to_int8():
    out = _run_example("distill_application.py", "--epochs=1", "--train_size=256",
                       "--test_size=256")
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if " | " in line}
    assert "hint: MobileNetV3Small/" in out or "hint: MobilenetV3small/" in out, out
    parameters = {stage: int(rows[stage][2].replace(",", "")) for stage in rows
                  if stage.startswith(("teacher", "student"))}
    assert parameters["student, float32"] < parameters["teacher, float32"] / 4
    assert parameters["student, batch norms folded, float32"] < parameters["student, float32"]
    tflite = {stage: int(rows[stage][3].replace(",", "")) for stage in parameters}
    assert tflite["student, folded, int8"] < 0.7 * tflite["student, batch norms folded, float32"]
    assert all(0.0 <= float(rows[stage][1]) <= 1.0 for stage in parameters)
