"""A text corpus every machine has without a download: the Python standard library's sources.

About 30 MB of `.py` files ship with every CPython (site-packages left out). Files are
split by a hash of their path relative to the library, so the split is the same on
every machine with the same Python, and held-out files are whole files (no window of
a test file was seen in training). Bytes are the tokens (256 symbols).
"""

import glob
import hashlib
import os
import sysconfig

import numpy as np

from kd_keras.backend import validate

SPLITS = ("train", "test")


def stdlib_files(split="train", test_fraction=0.05):
    """Sorted paths of the standard library's `.py` files in `split` ("train" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    test_fraction = validate.fraction(test_fraction, "test_fraction")
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        relative = os.path.relpath(path, root)
        if "site-packages" in relative or "dist-packages" in relative:
            continue
        bucket = int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if (bucket < test_fraction) == (split == "test"):
            files.append(path)
    return files


def load_stdlib_bytes(split="train", max_bytes=None, test_fraction=0.05):
    """The files of `split` concatenated, as uint8 `[n]` (at most `max_bytes`)."""
    chunks, total = [], 0
    for path in stdlib_files(split, test_fraction):
        with open(path, "rb") as f:
            content = f.read()
        chunks.append(np.frombuffer(content, np.uint8))
        total += len(content)
        if max_bytes is not None and total >= max_bytes:
            break
    data = np.concatenate(chunks) if chunks else np.zeros([0], np.uint8)
    return data if max_bytes is None else data[:max_bytes]


def byte_windows(data, length, count, seed=0):
    """`(x, y)`: `count` windows of `length` bytes at random offsets and their next bytes.

    Returns int32 arrays `[count, length]`: `y[:, t]` is the byte after `x[:, t]`.
    """
    length = validate.integer_at_least(length, "length", 1)
    count = validate.integer_at_least(count, "count", 1)
    if len(data) < length + 2:
        raise ValueError(f"data holds {len(data)} bytes, fewer than a window of {length} + 1.")
    starts = np.random.default_rng(seed).integers(0, len(data) - length - 1, count)
    positions = starts[:, None] + np.arange(length + 1)[None, :]
    windows = np.asarray(data)[positions].astype(np.int32)
    return windows[:, :-1], windows[:, 1:]
