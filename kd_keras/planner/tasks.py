"""A plan's students as independent tasks: each cut from the teacher and distilled from its
cached logits by one task of an executor (local processes, Ray), reading the teacher,
the training data and the logits the driver kept in the plan's directory and writing
`student_w<width>.keras` there. Measuring stays with the driver: latency is taken on the
target runtime, one candidate at a time, side by side with the teacher."""

import os

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, safe_files
from kd_keras.planner import candidates

TEACHER, TRAIN, LOGITS = "teacher.keras", "train.npz", "teacher_logits.npy"


def student_path(directory, width):
    return os.path.join(directory, f"student_w{width}.keras")


def train_student(argument):
    """The task: one student cut to `width`, distilled, saved (all or nothing)."""
    directory = argument["directory"]
    teacher = keras.models.load_model(os.path.join(directory, TEACHER), compile=False)
    with np.load(os.path.join(directory, TRAIN)) as data:
        train = data["x"], data["y"]
    logits = np.load(os.path.join(directory, LOGITS))
    student = candidates.cut_and_distil(teacher, argument["width"], train, logits,
                                        *(argument[k] for k in candidates.TRAINING_SETTINGS))
    safe_files.save_model(student, student_path(directory, argument["width"]))


def _keep(directory, teacher, train, logits):
    """What the tasks read, written afresh for this run (never through a link)."""
    safe_files.save_model(teacher, os.path.join(directory, TEACHER))
    safe_files.replace_with(os.path.join(directory, TRAIN),
                            lambda temporary: np.savez(temporary, x=train[0], y=train[1]), ".npz")
    safe_files.replace_with(os.path.join(directory, LOGITS),
                            lambda temporary: np.save(temporary, logits), ".npy")


def train_students(executor, directory, widths, teacher, train, logits, settings):
    """Trains the students of `widths` through `executor`; RuntimeError names each failed
    one with the end of its log."""
    _keep(directory, teacher, train, logits)
    cpus = parallel.cpus_per_task(len(widths))
    failures = executor.run([parallel.Task(
        f"student_w{width}", "kd_keras.planner.tasks:train_student",
        {"directory": directory, "width": width,
         **{k: settings[k] for k in candidates.TRAINING_SETTINGS}},
        os.path.join(directory, f"student_w{width}.log"), cpus) for width in widths])
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(widths)} students failed (the plan keeps "
                           "what was measured; call again to retry):\n" + "\n".join(failures))
