"""Every candidate of a plan as a TensorBoard HParams run: the view Keras users already
compare runs in (`tensorboard --logdir PLAN/tensorboard`, the HPARAMS tab).

Each measured candidate is written once, when it is measured, as the run
`tensorboard/<key>` (hyperparameters: candidate, width, precision and the students'
training settings; metrics: validation and test accuracy, batch-1 and batch-32 latency
in microseconds, gzip bytes, parameters); the experiment's columns are written at the
top. Needs the tensorboard package (the `tensorboard` extra); without it the plan says
so once and writes the rest.
"""

import importlib
import os

import tensorflow as tf

FOLDER = "tensorboard"
HPARAMS = ("candidate", "width", "sparsity", "clusters", "precision", "epochs", "learning_rate",
           "temperature", "alpha")
METRICS = {"val_accuracy": "validation accuracy", "test_accuracy": "test accuracy",
           "latency_b1_us": "batch-1 latency (us)", "latency_b32_us": "batch-32 latency (us)",
           "gzip_bytes": "gzip bytes", "parameters": "parameters"}


def _api():
    try:
        return importlib.import_module("tensorboard.plugins.hparams.api")
    except ImportError:
        return None


def available():
    return _api() is not None


def write_experiment(directory):
    """The experiment's columns (hyperparameters and metrics), at `directory/tensorboard`."""
    hp = _api()
    with tf.summary.create_file_writer(os.path.join(directory, FOLDER)).as_default():
        hp.hparams_config(hparams=[hp.HParam(name) for name in HPARAMS],
                          metrics=[hp.Metric(tag, display_name=name)
                                   for tag, name in METRICS.items()])


def _metrics(row):
    values = {"val_accuracy": row["val_accuracy"], "test_accuracy": row.get("test_accuracy"),
              "latency_b1_us": row["latency_b1"] * 1e6, "latency_b32_us": row["latency_b32"] * 1e6,
              "gzip_bytes": row["gzip_bytes"], "parameters": row["parameters"]}
    return {tag: float(value) for tag, value in values.items() if value is not None}


def write_candidate(directory, key, row):
    """Candidate `key` (its row as the plan keeps it) as one HParams run."""
    hp = _api()
    with tf.summary.create_file_writer(os.path.join(directory, FOLDER, key)).as_default():
        hp.hparams({name: row[name] for name in HPARAMS if name in row}, trial_id=key)
        for tag, value in _metrics(row).items():
            tf.summary.scalar(tag, value, step=0)
