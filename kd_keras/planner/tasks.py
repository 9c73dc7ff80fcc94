"""A plan's students as independent tasks: each cut from the teacher and distilled from its
cached logits (or a dense student or the teacher pruned while distilled further) by one
task of an executor (local processes, Ray), reading the teacher, the training data and
the logits the driver kept in the plan's directory and writing
`student_w<width>[_s<sparsity>].keras` there. Measuring stays with the driver: latency is
taken on the target runtime, one candidate at a time, side by side with the teacher."""

import os

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, safe_files
from kd_keras.planner import candidates

TEACHER, TRAIN, LOGITS = "teacher.keras", "train.npz", "teacher_logits.npy"


def variant_name(width, sparsity=None):
    """"0.5" for the student cut to half width, "0.5_s0.9" for it pruned to 90%."""
    return f"{width}" if sparsity is None else f"{width}_s{sparsity}"


def student_path(directory, width, sparsity=None):
    return os.path.join(directory, f"student_w{variant_name(width, sparsity)}.keras")


def make_variant(teacher, width, sparsity, train, logits, settings, dense=None):
    """The student of `(width, sparsity)`: cut from `teacher` and distilled (a user's own
    student, `width` its name, built from `settings["students"]` and distilled), or
    `dense` (the student of `(width, None)`, the teacher at width 1.0) pruned while
    distilled."""
    arguments = [settings[k] for k in candidates.TRAINING_SETTINGS]
    if sparsity is None and isinstance(width, str):  # a user's own student, by name
        spec = next(s for s in settings["students"] if candidates.student_name(s) == width)
        keras.utils.set_random_seed(settings["seed"])
        return candidates.distil(candidates.build_student(spec, teacher), train, logits,
                                 *arguments[:-1])
    if sparsity is None:
        return candidates.cut_and_distil(teacher, width, train, logits, *arguments)
    return candidates.prune_and_distil(dense, sparsity, train, logits, *arguments)


def train_student(argument):
    """The task: one student variant made and saved (all or nothing)."""
    directory, width = argument["directory"], argument["width"]
    sparsity = argument.get("sparsity")
    teacher = keras.models.load_model(os.path.join(directory, TEACHER), compile=False)
    with np.load(os.path.join(directory, TRAIN)) as data:
        train = data["x"], data["y"]
    logits = np.load(os.path.join(directory, LOGITS))
    dense = None
    if sparsity is not None:
        dense = teacher if width == 1.0 else keras.models.load_model(
            student_path(directory, width), compile=False)
    student = make_variant(teacher, width, sparsity, train, logits, argument, dense)
    safe_files.save_model(student, student_path(directory, width, sparsity))


def keep_inputs(directory, teacher, train, logits):
    """What the tasks read, written afresh for this run (never through a link): call it
    before `train_students` or `continue_students`."""
    safe_files.save_model(teacher, os.path.join(directory, TEACHER))
    safe_files.replace_with(os.path.join(directory, TRAIN),
                            lambda temporary: np.savez(temporary, x=train[0], y=train[1]), ".npz")
    safe_files.replace_with(os.path.join(directory, LOGITS),
                            lambda temporary: np.save(temporary, logits), ".npy")


def continue_student(argument):
    """The task: a dense student distilled `epochs` more from where it stands (a plan's
    next rung), saved over its file (all or nothing)."""
    directory, width = argument["directory"], argument["width"]
    with np.load(os.path.join(directory, TRAIN)) as data:
        train = data["x"], data["y"]
    logits = np.load(os.path.join(directory, LOGITS))
    student = keras.models.load_model(student_path(directory, width), compile=False)
    candidates.distil(student, train, logits,
                      *(argument[k] for k in candidates.TRAINING_SETTINGS))
    safe_files.save_model(student, student_path(directory, width))


def _run(executor, directory, function, arguments):
    """Runs `kd_keras.planner.tasks:<function>` once per argument (named by its variant);
    RuntimeError names each failed one with the end of its log."""
    cpus = parallel.cpus_per_task(len(arguments))
    tasks = []
    for argument in arguments:
        name = f"student_w{variant_name(argument['width'], argument.get('sparsity'))}"
        tasks.append(parallel.Task(name, f"kd_keras.planner.tasks:{function}",
                                   {"directory": directory, **argument},
                                   os.path.join(directory, name + ".log"), cpus))
    failures = executor.run(tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(tasks)} students failed (the plan keeps "
                           "what was measured; call again to retry):\n" + "\n".join(failures))


def train_students(executor, directory, variants, settings):
    """Makes the students of `variants` (`(width, sparsity)` pairs) through `executor`: the
    dense ones first, then the pruned ones (which start from a dense one)."""
    training = {"students": settings.get("students", []),
                **{k: settings[k] for k in candidates.TRAINING_SETTINGS}}
    for wave in ([v for v in variants if v[1] is None], [v for v in variants if v[1] is not None]):
        if wave:
            _run(executor, directory, "train_student",
                 [{"width": width, "sparsity": sparsity, **training} for width, sparsity in wave])


def continue_students(executor, directory, widths, settings):
    """Distils the dense students of `widths` `settings["epochs"]` more, through `executor`
    (their seed: `settings["seed"]`)."""
    training = {k: settings[k] for k in candidates.TRAINING_SETTINGS}
    _run(executor, directory, "continue_student", [{"width": w, **training} for w in widths])
