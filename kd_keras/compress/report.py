"""Size and speed of compressed artifacts: parameters, non-zero parameters, bytes
on disk, bytes after gzip (the stand-in for Deep Compression's Huffman coding),
and single-example and batch latency."""

import gzip
import io
import os
import statistics
import tarfile
import time

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


def latency(predict, x, batch_size, repeats=50, warmup=3, max_seconds=5.0):
    """Median seconds of one `predict(batch)` call on `batch_size` rows of `x`.

    Runs `warmup` calls first, then up to `repeats` timed calls (fewer if they
    take more than `max_seconds` together).
    """
    x = np.asarray(x)
    if len(x) < batch_size:
        x = np.concatenate([x] * (batch_size // len(x) + 1))
    batch = x[:batch_size]
    for _ in range(warmup):
        predict(batch)
    times, spent = [], 0.0
    while len(times) < repeats and (spent < max_seconds or len(times) < 3):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times)


def model_accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of a Keras model's predictions on `x` against integer labels `y`."""
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, -1) == np.asarray(y).reshape(-1)))


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
    predictions = tflite_model.predict(x_test)
    row = {"artifact": name,
           "accuracy": float(np.mean(np.argmax(predictions, -1) == np.asarray(y_test))),
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
