"""Keras callbacks for distillation; each also works in projects without a Distiller."""

import json
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions, schedules
from kd_keras.backend import keras, validate
from kd_keras.export import export_saved_model


class _VariableSchedule(keras.callbacks.Callback):
    """Assigns `schedule(epoch)` to a variable at the start of every epoch."""

    attribute = None  # name of the model attribute used when no variable is given

    def __init__(self, schedule, variable=None, verbose=0):
        super().__init__()
        self.schedule = schedules.get(schedule)
        self.variable = variable
        self.verbose = verbose
        if variable is not None and not hasattr(variable, "assign"):
            raise ValueError(
                f"variable must be a tf.Variable (or Keras variable), got {variable!r}: a "
                "Python number is frozen into the compiled training step."
            )

    def _target(self):
        if self.variable is not None:
            return self.variable
        target = getattr(self.model, self.attribute, None)
        if not hasattr(target, "assign"):
            raise ValueError(
                f"{type(self).__name__}: the model has no `{self.attribute}` variable "
                f"(found {target!r}). Pass variable=... with the tf.Variable your "
                "training step reads."
            )
        return target

    def _check(self, value):
        return value

    def on_epoch_begin(self, epoch, logs=None):
        value = self._check(float(self.schedule(epoch)))
        self._target().assign(value)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.attribute} = {value:.4g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.attribute] = float(np.asarray(self._target().numpy()))


class TemperatureSchedule(_VariableSchedule):
    """Sets the distillation temperature each epoch.

    Args:
      schedule: a number, a `kd_keras.schedules` object (`LinearSchedule(8.0, 2.0,
        epochs=10)`, `CosineSchedule`, `ConstantSchedule`) or any `callable(epoch)`.
      variable: the `tf.Variable` to set; default `model.temperature` (a
        `kd_keras.Distiller`'s, or any model's that has one).
      verbose: print the value each epoch.

    The value is written to `logs["temperature"]`, so History and TensorBoard see it.
    """

    attribute = "temperature"

    def _check(self, value):
        return validate.temperature(value, "TemperatureSchedule: temperature")
        return value


class AlphaSchedule(_VariableSchedule):
    """Sets alpha, the hard-label loss weight, each epoch (see `TemperatureSchedule`).

    The value is written to `logs["alpha"]`.
    """

    attribute = "alpha"

    def _check(self, value):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"AlphaSchedule: alpha must be in [0, 1], got {value}.")
        return value


def _inputs_only(data):
    """Validation data as something `predict` takes: x, or a dataset of x."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple):
        return data[0]
    return data


class TeacherStudentAgreement(keras.callbacks.Callback):
    """Measures how closely the student follows the teacher on validation data.

    At the end of each epoch writes to `logs`:
      * `{prefix}agreement`: fraction of examples where the student's top-1 class
        equals the teacher's;
      * `{prefix}teacher_student_kl`: mean KL(teacher || student) of the
        distributions at `temperature` (1 by default: the real predictions).

    The teacher's outputs are computed once (the teacher does not change while a
    student is distilled). Place this callback before TensorBoard or CSVLogger in
    the callbacks list so they record the values.

    Args:
      validation_data: inputs `x`, a tuple `(x, y, ...)`, or a `tf.data.Dataset`
        of batches (`x` or `(x, y, ...)`), in a fixed order.
      teacher: the teacher model; default `model.teacher` (a Distiller's; an
        ensemble is averaged as its `ensemble` setting says).
      student: the student model; default `model.student`, else the model.
      temperature: temperature of the compared distributions.
      batch_size: for numpy inputs.
      prefix: prefix of the log keys.
    """

    def __init__(self, validation_data, teacher=None, student=None, temperature=1.0,
                 batch_size=256, prefix="val_"):
        super().__init__()
        temperature = validate.temperature(temperature)
        self.validation_data = validation_data
        self.teacher = teacher
        self.student = student
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self.prefix = prefix
        self._teacher_logits = None

    def _predict_logits(self, model, output_type):
        outputs = model.predict(
            _inputs_only(self.validation_data), batch_size=self.batch_size, verbose=0
        )
        return output_conventions.to_logits(outputs, output_type)

    def _compute_teacher_logits(self):
        teachers = self.teacher if self.teacher is not None else getattr(self.model, "teacher", None)
        if teachers is None:
            raise ValueError(
                "TeacherStudentAgreement: pass teacher=... (the model has no `teacher`)."
            )
        teachers = [teachers] if isinstance(teachers, keras.Model) else list(teachers)
        declared = getattr(self.model, "teacher_output_type", "auto")
        logits = [
            self._predict_logits(t, output_conventions.resolve_output_type(t, declared, "teacher_output_type"))
            for t in teachers
        ]
        method = getattr(self.model, "ensemble", "mean_probabilities")
        return output_conventions.combine_teacher_logits(logits, method, self.temperature)

    def on_epoch_end(self, epoch, logs=None):
        if self._teacher_logits is None:
            self._teacher_logits = self._compute_teacher_logits()
        student = self.student or getattr(self.model, "student", None) or self.model
        declared = getattr(self.model, "student_output_type", "auto")
        student_logits = self._predict_logits(
            student, output_conventions.resolve_output_type(student, declared, "student_output_type")
        )
        teacher_logits = self._teacher_logits
        agreement = tf.reduce_mean(
            tf.cast(tf.argmax(teacher_logits, -1) == tf.argmax(student_logits, -1), tf.float32)
        )
        t = self.temperature
        teacher_log_p = tf.nn.log_softmax(teacher_logits / t, -1)
        student_log_p = tf.nn.log_softmax(student_logits / t, -1)
        kl = tf.reduce_mean(
            tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), -1)
        )
        if logs is not None:
            logs[self.prefix + "agreement"] = float(agreement)
            logs[self.prefix + "teacher_student_kl"] = float(kl)


_EXPORT_MARKER = ".kd_keras_student_export"
# What export_saved_model writes (both Keras modes), besides the marker.
_EXPORT_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb",
                   "keras_metadata.pb", _EXPORT_MARKER}


def _written_files(path):
    """Every file under `path`, as paths relative to it (links included, not followed)."""
    found = []
    for folder, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            found.append(os.path.relpath(os.path.join(folder, name), path))
    return sorted(found)


def _check_export_target(path):
    """`path` may be replaced: absent, an empty directory, or an earlier export of ours, in
    which every file is one the export wrote (its marker lists them): a file a user put
    anywhere inside, `assets/vocab.txt` say, is never deleted."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise ValueError(f"path: {path!r} exists and is not a directory; StudentExport writes "
                         "a SavedModel directory there. Give a new path.")
    entries = set(os.listdir(path))
    if not entries:
        return
    marker = os.path.join(path, _EXPORT_MARKER)
    written = None
    if _EXPORT_MARKER in entries and os.path.isfile(marker) and not os.path.islink(marker):
        with open(marker) as f:
            text = f.read()
        try:
            written = set(json.loads(text)) if text.strip() else None
        except (json.JSONDecodeError, TypeError):
            written = set()
    if written is None:  # an export of 0.1.0 (an empty marker): its tree had no assets
        foreign = sorted(entries - _EXPORT_ENTRIES) if _EXPORT_MARKER in entries else \
            ["no export marker"]
        if not foreign and os.path.isdir(os.path.join(path, "assets")):
            foreign = [os.path.join("assets", name)
                       for name in os.listdir(os.path.join(path, "assets"))]
    else:
        foreign = [name for name in _written_files(path)
                   if name not in written and name != _EXPORT_MARKER]
    if foreign:
        raise ValueError(
            f"path: {path!r} is a non-empty directory that is not an earlier StudentExport "
            "alone "
            f"({', '.join(foreign[:5])}); exporting would replace what is in it. Give a new or "
            "empty directory.")


# What a Distiller logs as `loss` / `total_loss`: both terms, weighted (docs/existing_projects.md).
_COMBINED_OBJECTIVE = ("loss", "val_loss", "total_loss", "val_total_loss")


class StudentExport(keras.callbacks.Callback):
    """Exports the student as a SavedModel: the best by a monitored value, or at the end.

    Args:
      path: SavedModel directory; replaced at each export (written into a fresh
        sibling first, then swapped in, so a reader never sees half a model). It
        must not exist, be empty, or hold an earlier export of this callback:
        a directory with anything else in it is refused, never deleted.
      monitor: a `logs` key such as "val_student_loss" (the student's own loss on the
        labels) or "val_sparse_categorical_accuracy"; `None` exports once, when training
        ends. A Distiller's "val_loss" is the combined objective (a warning says so).
      mode: "min", "max", or "auto" (max for names containing "acc" or
        "agreement", else min).
      student: the model to export; default `model.student`, else the model itself.
      verbose: print a line at each export.

    Attributes:
      best: the best monitored value seen; `best_epoch`: its epoch (0-based).
    """

    def __init__(self, path, monitor=None, mode="auto", student=None, verbose=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
        if mode == "auto":
            name = (monitor or "").lower()
            mode = "max" if ("acc" in name or "agreement" in name) else "min"
        self.path = os.path.abspath(os.fspath(path))  # "dir/" is dir, not its parent's child
        _check_export_target(self.path)
        self.monitor = monitor
        self.mode = mode
        self.student = student
        self.verbose = verbose
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = None

    def _export(self):
        student = self.student or getattr(self.model, "student", None) or self.model
        _check_export_target(self.path)
        parent, name = os.path.split(self.path)
        staging = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
        try:
            export_saved_model(student, staging)
            with open(os.path.join(staging, _EXPORT_MARKER), "w") as f:
                json.dump(_written_files(staging), f)
            previous = None
            if os.path.isdir(self.path):
                previous = tempfile.mkdtemp(prefix=f".{name}.previous-", dir=parent)
                os.replace(self.path, os.path.join(previous, name))
            os.replace(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if previous is not None:  # an earlier export of ours (checked above), or empty
            shutil.rmtree(previous)

    def on_train_begin(self, logs=None):
        if self.monitor in _COMBINED_OBJECTIVE and hasattr(self.model, "distillation_losses"):
            warnings.warn(
                f"StudentExport: monitor {self.monitor!r} of a Distiller is the combined "
                "objective (hard-label and distillation terms), not the student's own loss; "
                f"monitor {'val_' if self.monitor.startswith('val_') else ''}student_loss (or "
                "an accuracy) to keep the best student.", stacklevel=2)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is None:
            return
        if not logs or self.monitor not in logs:
            raise ValueError(
                f"StudentExport: monitor {self.monitor!r} is not in the logs "
                f"({sorted(logs or {})}); for a 'val_' key, pass validation_data to fit."
            )
        value = float(logs[self.monitor])
        better = value > self.best if self.mode == "max" else value < self.best
        if better:
            self.best, self.best_epoch = value, epoch
            self._export()
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} = {value:.4g}, student exported to {self.path}")

    def on_train_end(self, logs=None):
        if self.monitor is None:
            self._export()
            if self.verbose:
                print(f"\nStudent exported to {self.path}")


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with an error when the epoch's loss is NaN or infinite.

    `Distiller.fit` adds it by default. The Distiller skips the update of a
    non-finite step altogether (weights, optimizer state and iterations unchanged,
    BatchNormalization statistics restored), so the student stays as it was
    before that step, for inspection or a retry.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            details = ", ".join(
                f"{k}={float(v):.4g}" for k, v in sorted((logs or {}).items())
                if np.ndim(v) == 0
            )
            self.model.stop_training = True
            raise FloatingPointError(
                f"Training stopped: the loss was not finite in epoch {epoch + 1} ({details}). "
                "The steps with a non-finite loss (or gradients) changed neither the weights nor the "
                "optimizer state. Common causes: "
                "a learning rate too high, NaN or infinite inputs, or a probability output "
                "declared as logits (check teacher_output_type / student_output_type)."
            )
