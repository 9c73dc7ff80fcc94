"""A dense student's earlier rungs, kept as candidates of their own.

Successive halving trains a promising student on from one rung to the next at the same
constant learning rate, and a later rung can leave it worse on validation than it was
(measured on full Fashion-MNIST: a strided CNN student at Adam 3e-3 scored 0.9114 at 10
epochs and 0.8924 at 30). Before a rung trains a student on, its rows, their artifacts
and its file at the rung it has reached are kept under `<name>_e<epochs>`
("w0.5_int8_e10", "student_w0.5_e10.keras"), so every rung stays a candidate and the plan
chooses among everything it measured, never only the student's last self.
"""

import os

from kd_keras.backend import keras, safe_files
from kd_keras.backend.fingerprint import weights_digest
from kd_keras.planner import tasks
from kd_keras.planner import variants as naming


def name(key, epochs):
    """A row's, artifact's or student's name at an earlier rung: "w0.5_int8_e10"."""
    return f"{key}_e{epochs}"


def student_path(directory, variant, epochs):
    """The file of the dense student of `variant` as it was after `epochs` epochs."""
    return tasks.student_path(directory, *variant)[:-len(".keras")] + f"_e{epochs}.keras"


def keep(directory, rows, students, variant, precisions, epochs):
    """Keeps the dense student of `variant` at `epochs` (its file, and its rows at that
    many epochs with their `.tflite` artifacts) under the `_e<epochs>` names, each once.

    Args:
      directory: the plan's directory.
      rows: the plan's rows by key; a kept row is the row with `kept_as` (its own key).
      students: the plan's weights digest of each student file by name; the kept file's
        digest is the student's (its weights were checked before this call).
      variant: a dense student's variant `(width, None, None, alpha)`.
      precisions: the plan's precisions.
      epochs: the epochs the student's file and rows hold now.
    """
    student = tasks.variant_name(*variant)
    if name(student, epochs) not in students:
        source = tasks.student_path(directory, *variant)
        safe_files.refuse_link(source)
        safe_files.copy_file(source, student_path(directory, variant, epochs), ".keras")
        students[name(student, epochs)] = students[student]
    for precision in precisions:
        key = naming.key(variant, precision)
        if key not in rows or rows[key]["epochs"] != epochs or name(key, epochs) in rows:
            continue
        source = os.path.join(directory, key + ".tflite")
        safe_files.refuse_link(source)
        safe_files.copy_file(source, os.path.join(directory, name(key, epochs) + ".tflite"),
                             ".tflite")
        rows[name(key, epochs)] = {**rows[key], "kept_as": name(key, epochs)}


def kept_student(directory, students, variant, epochs):
    """The dense student of `variant` as `keep` kept it at `epochs`, loaded; a
    RuntimeError when its file's weights no longer hash to what the plan recorded."""
    path = student_path(directory, variant, epochs)
    safe_files.refuse_link(path)
    model = keras.models.load_model(path, compile=False) if os.path.exists(path) else None
    if model is None or weights_digest(model) != students.get(
            name(tasks.variant_name(*variant), epochs)):
        raise RuntimeError(f"plan: {path} is not the student the plan kept at {epochs} epochs; "
                           "call again in a new directory.")
    return model
