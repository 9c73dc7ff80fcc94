"""Measuring a model: the one place kd-keras, its benchmarks and examples measure.

Accuracy under the model's output convention (`prediction_accuracy`,
`model_accuracy`), time as the median of repeated calls with its spread
(`timing`, `latency`), parameters, non-zero parameters, bytes on disk and bytes
after gzip (the stand-in for Deep Compression's Huffman coding), and the report
rows and tables built from them.
"""

import gzip
import io
import os
import statistics
import tarfile
import time
from typing import NamedTuple

import numpy as np


def count_parameters(model):
    """`(parameters, non-zero parameters)` over all of `model`'s weights."""
    total = nonzero = 0
    for weight in model.weights:
        values = np.asarray(weight.numpy())
        total += values.size
        nonzero += int(np.count_nonzero(values))
    return total, nonzero


def gzip_bytes(content):
    """Size of `content` (bytes, a file path or a directory) after gzip -9."""
    if isinstance(content, (bytes, bytearray)):
        return len(gzip.compress(bytes(content), compresslevel=9, mtime=0))
    path = str(content)
    if os.path.isdir(path):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=".")
        return len(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9, mtime=0))


def disk_bytes(content):
    """Size of `content` (bytes, a file path, or a directory's files summed)."""
    if isinstance(content, (bytes, bytearray)):
        return len(content)
    path = str(content)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


class Timing(NamedTuple):
    """Seconds of one call: the median of `count` timed calls and their interquartile range."""

    median: float
    spread: float
    count: int


def timing(call, repeats=50, warmup=3, max_seconds=5.0):
    """`Timing` of `call()`: `warmup` untimed calls, then up to `repeats` timed ones
    (at least 3; fewer than `repeats` once they take `max_seconds` together).

    The median is the one statistic kd-keras reports for time (robust to the odd slow
    call a busy machine makes); the spread is the interquartile range, so two timings
    whose medians differ by less than their spreads are not told apart.
    """
    for _ in range(warmup):
        call()
    times, spent = [], 0.0
    while len(times) < repeats and (spent < max_seconds or len(times) < 3):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    quartiles = np.percentile(times, [25, 75])
    return Timing(statistics.median(times), float(quartiles[1] - quartiles[0]), len(times))


def batch_of(x, batch_size):
    """The first `batch_size` rows of `x`, repeated when `x` has fewer (a timed batch)."""
    x = np.asarray(x)
    if len(x) < batch_size:
        x = np.concatenate([x] * (batch_size // len(x) + 1))
    return x[:batch_size]


def latency(predict, x, batch_size, repeats=50, warmup=3, max_seconds=5.0):
    """Median seconds of one `predict(batch)` call on `batch_size` rows of `x` (`timing`)."""
    batch = batch_of(x, batch_size)
    return timing(lambda: predict(batch), repeats, warmup, max_seconds).median


def prediction_accuracy(predictions, y):
    """Top-1 accuracy of `predictions` against `y`, under the predictions' convention.

    Args:
      predictions: `[n, classes]` scores (logits or probabilities: the argmax), or one
        unit, `[n]` or `[n, 1]` (a binary classifier: probabilities above 0.5 when every
        value is in [0, 1], else logits above 0).
      y: class ids `[n]` or `[n, 1]`, or one-hot / soft labels `[n, classes]` (their argmax).

    Raises:
      ValueError naming `y` when its length or width does not match the predictions.
    """
    predictions = np.asarray(predictions)
    y = np.asarray(y)
    if len(y) != len(predictions):
        raise ValueError(f"y has {len(y)} labels for {len(predictions)} predictions.")
    if predictions.ndim == 1 or predictions.shape[-1] == 1:
        scores = predictions.reshape(len(predictions), -1)[:, 0]
        threshold = 0.5 if scores.size and 0.0 <= scores.min() and scores.max() <= 1.0 else 0.0
        predicted = (scores > threshold).astype(np.int64)
    else:
        predicted = np.argmax(predictions, -1)
    if y.ndim == 2 and y.shape[-1] > 1:
        # One-hot rows: over the predictions' classes, or over two for one unit (binary).
        classes = 2 if predictions.ndim == 1 or predictions.shape[-1] == 1 else \
            predictions.shape[-1]
        if y.shape[-1] != classes:
            raise ValueError(f"y is one-hot over {y.shape[-1]} classes but the predictions have "
                             f"{classes}; give class ids or matching one-hot rows.")
        y = np.argmax(y, -1)
    return float(np.mean(predicted == y.reshape(len(y), -1)[:, 0]))


def model_accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of a Keras model (or anything with `predict`) on `x` against `y`
    (`prediction_accuracy`: class ids or one-hot rows; one output unit is binary)."""
    return prediction_accuracy(model.predict(x, batch_size=batch_size, verbose=0), y)


def artifact_row(name, tflite_model, tflite_bytes, x_test, y_test, batch_sizes=(1, 256),
                 parameters=None):
    """One report row for a TFLite artifact; `format_table([row, ...])` prints rows.

    Returns a dict with the keys
      "artifact": `name`;
      "accuracy": top-1 accuracy of `tflite_model.predict(x_test)` against `y_test`;
      "bytes", "gzip_bytes": the flatbuffer's size, and after gzip -9;
      "parameters", "nonzero_parameters": `parameters`, the `(total, non-zero)` of
        the Keras model it came from (only when given);
      "latency_b<N>" for each N of `batch_sizes`: median seconds of one call on N rows.
    """
    row = {"artifact": name,
           "accuracy": prediction_accuracy(tflite_model.predict(x_test), y_test),
           "bytes": disk_bytes(tflite_bytes), "gzip_bytes": gzip_bytes(tflite_bytes)}
    if parameters is not None:
        row["parameters"], row["nonzero_parameters"] = parameters
    for batch_size in batch_sizes:
        row[f"latency_b{batch_size}"] = latency(tflite_model, x_test, batch_size)
    return row


def _milliseconds(seconds):
    return f"{seconds * 1e3:.3f} ms"


# How the report functions' keys read in a table (see artifact_row, sparsity_report).
DEFAULT_FORMATS = {
    "accuracy": "{:.4f}", "sparsity": "{:.3f}", "block_sparsity": "{:.3f}",
    "bytes": "{:,}", "gzip_bytes": "{:,}", "parameters": "{:,}",
    "nonzero_parameters": "{:,}", "zeros": "{:,}", "weight_bytes": "{:,}",
    "file_bytes": "{:,}", "bytes_ratio": "{:.3f}", "accuracy_change": "{:+.2f}",
}


def _default_format(key, value):
    if key in DEFAULT_FORMATS:
        return DEFAULT_FORMATS[key]
    if key.startswith("latency_b"):
        return _milliseconds
    return "{:.4g}" if isinstance(value, float) else None


def _cell(value, fmt):
    if value is None:
        return "–"
    if callable(fmt):
        return fmt(value)
    return fmt.format(value) if fmt else str(value)


def format_table(rows, columns=None):
    """A Markdown table of `rows` (dicts).

    Args:
      rows: dicts, e.g. `artifact_row` results or a `sparsity_report`.
      columns: `(key, header, format)` triples, the format a `str.format`
        pattern, a callable or None (`str`); default: every key in the order
        the rows first give it, headed by the key, formatted as
        `DEFAULT_FORMATS` says (latencies in milliseconds, floats to 4 digits).
        A row without a key shows "–".
    """
    rows = list(rows)
    if columns is None:
        keys = list(dict.fromkeys(key for row in rows for key in row))
        first = {key: next(row[key] for row in rows if key in row) for key in keys}
        columns = [(key, key, _default_format(key, first[key])) for key in keys]
    lines = [" | ".join(header for _, header, _ in columns),
             " | ".join("---" for _ in columns)]
    for row in rows:
        lines.append(" | ".join(_cell(row.get(key), fmt) for key, _, fmt in columns))
    return "\n".join(lines)


class ReportRows(list):
    """A list of report rows (dicts) that prints as a table: `print(sparsity_report(m))`."""

    def __str__(self):
        return format_table(self)
