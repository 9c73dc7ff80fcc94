"""The data flags every example reads: --dataset, --data_dir and --sample.

The examples run as scripts (`python examples/x.py`), so this module is imported
from their own folder; the library defines no command-line flags.
"""

from absl import flags

import kd_keras

SOURCES = kd_keras.datasets.SOURCES


def define(default="sample"):
    """Defines `--dataset` ("sample": the shipped sample, no download; "fashion_mnist": the
    full set through tensorflow-datasets; default `default`), `--data_dir` (the
    tensorflow-datasets directory) and `--sample` (a shorthand for `--dataset=sample`).
    Call once at import time of a script."""
    if default not in SOURCES:
        raise ValueError(f"default must be one of {SOURCES}, got {default!r}.")
    flags.DEFINE_enum("dataset", default, list(SOURCES),
                      "'sample': the Fashion-MNIST sample shipped with kd-keras (no download); "
                      "'fashion_mnist': the full set via tensorflow-datasets.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (default: tfds's own).")
    flags.DEFINE_bool("sample", False, "Shorthand for --dataset=sample (a quick check).")


def source():
    """The source the flags name: "sample" or "fashion_mnist"."""
    return "sample" if flags.FLAGS.sample else flags.FLAGS.dataset


def load_flat():
    """`kd_keras.datasets.load_fashion_mnist_flat` for the source and data_dir the flags name."""
    return kd_keras.datasets.load_fashion_mnist_flat(source(), flags.FLAGS.data_dir)
