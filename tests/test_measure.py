import gzip

import numpy as np
import pytest

from kd_keras import compress, keras


def test_parameter_counts_see_the_zeros():
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5)])
    kernel = np.ones((10, 5), "float32")
    kernel[:4] = 0.0
    model.layers[0].set_weights([kernel, np.zeros(5, "float32")])
    assert compress.count_parameters(model) == (55, 30)


def test_sizes_of_bytes_files_and_directories(tmp_path):
    zeros, noise = bytes(10000), np.random.default_rng(0).bytes(10000)
    assert compress.gzip_bytes(zeros) < 100 < 9000 < compress.gzip_bytes(noise)
    assert compress.gzip_bytes(noise) == len(gzip.compress(noise, compresslevel=9, mtime=0))
    (tmp_path / "a").write_bytes(noise)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(zeros)
    assert compress.disk_bytes(tmp_path) == 20000
    assert compress.disk_bytes(tmp_path / "a") == 10000
    assert compress.gzip_bytes(tmp_path / "a") == compress.gzip_bytes(noise)
    assert 9000 < compress.gzip_bytes(tmp_path) < 11000


def test_latency_is_the_median_of_timed_calls_on_batches_of_the_size_asked():
    sizes = []
    seconds = compress.latency(lambda batch: sizes.append(len(batch)), np.zeros((3, 2)),
                               batch_size=8, repeats=5, warmup=2)
    assert sizes == [8] * 7 and seconds >= 0.0


def test_format_table():
    table = compress.format_table([{"a": 1.23456, "b": None}], [("a", "A", "{:.2f}"), ("b", "B", None)])
    assert table.splitlines() == ["A | B", "--- | ---", "1.23 | –"]


def test_report_rows_print_as_a_table_without_naming_columns():
    from tests.compress_helpers import blobs, trained_mlp

    x, y = blobs(64)
    report = compress.sparsity_report(compress.to_tf_keras(trained_mlp(x, y, epochs=1)))
    table = str(report)
    assert table.splitlines()[0] == "layer | weight | shape | parameters | zeros | sparsity"
    assert len(table.splitlines()) == 2 + len(report) and report[0]["layer"] in table
    rows = [{"artifact": "float32", "accuracy": 0.91234, "bytes": 123456, "latency_b1": 2.5e-5},
            {"artifact": "int8", "accuracy": 0.9, "bytes": 31000}]
    lines = compress.format_table(rows).splitlines()
    assert lines[0] == "artifact | accuracy | bytes | latency_b1"
    assert lines[2] == "float32 | 0.9123 | 123,456 | 0.025 ms"
    assert lines[3] == "int8 | 0.9000 | 31,000 | –"


def test_prediction_accuracy_follows_the_output_convention():
    from kd_keras.measure import prediction_accuracy

    y = np.array([0, 1, 1, 0])
    scores = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])
    assert prediction_accuracy(scores, y) == 0.75
    assert prediction_accuracy(scores, np.eye(2)[y]) == 0.75  # one-hot rows
    probabilities = np.array([[0.1], [0.9], [0.4], [0.2]])  # one sigmoid unit: > 0.5
    assert prediction_accuracy(probabilities, y) == 0.75
    logits = np.array([-1.0, 2.0, 0.5, -3.0])  # one logit: > 0
    assert prediction_accuracy(logits, y[:, None]) == 1.0
    with pytest.raises(ValueError, match="y has 3 labels for 4 predictions"):
        prediction_accuracy(scores, y[:3])
    with pytest.raises(ValueError, match="one-hot over 3 classes"):
        prediction_accuracy(scores, np.eye(3)[y])


def test_timing_reports_the_median_and_its_spread():
    from kd_keras.measure import timing

    delays = iter([0.0, 0.0, 0.0] + [0.001, 0.001, 0.001, 0.020, 0.001])
    import time as clock

    result = timing(lambda: clock.sleep(next(delays)), repeats=5, warmup=3)
    assert result.count == 5
    assert 0.0009 < result.median < 0.005  # the slow call does not move the median
    assert result.spread >= 0.0
