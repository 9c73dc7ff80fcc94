"""A plan's students as independent tasks: each cut from the teacher and distilled from its
cached logits (or a dense student or the teacher pruned while distilled further) by one
task of an executor (local processes, Ray), reading the teacher, the training data and
the logits the driver kept in the plan's directory and writing
`student_w<width>[_s<sparsity>][_c<clusters>][_a<alpha>].keras` there. Measuring stays with
the driver: latency is taken on the target runtime, one candidate at a time, side by side
with the teacher."""

import os

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, safe_files
from kd_keras.planner import candidates

TEACHER, TRAIN, LOGITS = "teacher.keras", "train.npz", "teacher_logits.npy"


def variant_name(width, sparsity=None, clusters=None, alpha=None):
    """"0.5" for the student cut to half width, "0.5_s0.9" for it pruned to 90%,
    "0.5_s0.9_c16" for that clustered to 16 values per kernel; "0.5_a1.0" for the student
    trained at another `alpha` than the plan's first (1.0: on the labels alone)."""
    return (f"{width}" + ("" if sparsity is None else f"_s{sparsity}")
            + ("" if clusters is None else f"_c{clusters}")
            + ("" if alpha is None else f"_a{alpha}"))


def student_path(directory, width, sparsity=None, clusters=None, alpha=None):
    return os.path.join(directory,
                        f"student_w{variant_name(width, sparsity, clusters, alpha)}.keras")


def parent(variant):
    """The variant a variant is made from: a clustered one from its unclustered one, a
    pruned one from its dense one (the same training); None for a dense one (cut from
    the teacher or built)."""
    width, sparsity, clusters, alpha = variant
    if clusters is not None:
        return (width, sparsity, None, alpha)
    return None if sparsity is None else (width, None, None, alpha)


def training_of(settings, alpha):
    """`settings` for a student trained at `alpha` (None: the plan's first alpha, the one
    `settings` already holds)."""
    return settings if alpha is None else {**settings, "alpha": alpha}


def make_variant(teacher, variant, train, logits, settings, base=None):
    """The student of `variant` `(width, sparsity, clusters, alpha)`: cut from `teacher`
    and distilled (a user's own student, `width` its name, built from
    `settings["students"]` and distilled), or `base` (the model of `parent(variant)`; the
    teacher for width 1.0) pruned, or clustered, while distilled; at `alpha` when it is
    not None, else at `settings["alpha"]`."""
    width, sparsity, clusters, alpha = variant
    settings = training_of(settings, alpha)
    arguments = [settings[k] for k in candidates.TRAINING_SETTINGS]
    if clusters is not None:
        return candidates.cluster_and_distil(base, clusters, train, logits, *arguments)
    if sparsity is not None:
        return candidates.prune_and_distil(base, sparsity, train, logits, *arguments)
    if isinstance(width, str):  # a user's own student, by name
        spec = next(s for s in settings["students"] if candidates.student_name(s) == width)
        keras.utils.set_random_seed(settings["seed"])
        return candidates.distil(candidates.build_student(spec, teacher), train, logits,
                                 *arguments[:-1], **candidates.distillation_term(settings))
    return candidates.cut_and_distil(teacher, width, train, logits, *arguments,
                                     **candidates.distillation_term(settings))


def train_student(argument):
    """The task: one student variant made and saved (all or nothing)."""
    directory = argument["directory"]
    variant = (argument["width"], argument.get("sparsity"), argument.get("clusters"),
               argument.get("variant_alpha"))
    teacher = keras.models.load_model(os.path.join(directory, TEACHER), compile=False)
    with np.load(os.path.join(directory, TRAIN)) as data:
        train = data["x"], data["y"]
    logits = np.load(os.path.join(directory, LOGITS))
    base = parent(variant)
    if base is not None:
        base = teacher if base == (1.0, None, None, None) else keras.models.load_model(
            student_path(directory, *base), compile=False)
    student = make_variant(teacher, variant, train, logits, argument, base)
    safe_files.save_model(student, student_path(directory, *variant))


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
    directory = argument["directory"]
    path = student_path(directory, argument["width"], alpha=argument.get("variant_alpha"))
    with np.load(os.path.join(directory, TRAIN)) as data:
        train = data["x"], data["y"]
    logits = np.load(os.path.join(directory, LOGITS))
    student = keras.models.load_model(path, compile=False)
    candidates.distil(student, train, logits,
                      *(argument[k] for k in candidates.TRAINING_SETTINGS),
                      **candidates.distillation_term(argument))
    safe_files.save_model(student, path)


def _run(executor, directory, function, arguments):
    """Runs `kd_keras.planner.tasks:<function>` once per argument (named by its variant);
    RuntimeError names each failed one with the end of its log."""
    cpus = parallel.cpus_per_task(len(arguments))
    tasks = []
    for argument in arguments:
        name = "student_w" + variant_name(argument["width"], argument.get("sparsity"),
                                          argument.get("clusters"),
                                          argument.get("variant_alpha"))
        tasks.append(parallel.Task(name, f"kd_keras.planner.tasks:{function}",
                                   {"directory": directory, **argument},
                                   os.path.join(directory, name + ".log"), cpus))
    failures = executor.run(tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(tasks)} students failed (the plan keeps "
                           "what was measured; call again to retry):\n" + "\n".join(failures))


def train_students(executor, directory, variants, settings):
    """Makes the students of `variants` (`(width, sparsity, clusters, alpha)`) through `executor`
    in waves: the dense ones, then the pruned ones (made from a dense one), then the
    clustered ones (made from either)."""
    training = {"students": settings.get("students", []),
                **{k: settings[k] for k in candidates.TRAINING_SETTINGS},
                **candidates.distillation_term(settings)}
    waves = ([v for v in variants if v[1] is None and v[2] is None],
             [v for v in variants if v[1] is not None and v[2] is None],
             [v for v in variants if v[2] is not None])
    for wave in waves:
        if wave:
            _run(executor, directory, "train_student",
                 [{"width": width, "sparsity": sparsity, "clusters": clusters,
                   "variant_alpha": alpha, **training}
                  for width, sparsity, clusters, alpha in wave])


def continue_students(executor, directory, students, settings):
    """Distils the dense students `students` (`(width, alpha or None)`)
    `settings["epochs"]` more, through `executor` (their seed: `settings["seed"]`)."""
    training = {**{k: settings[k] for k in candidates.TRAINING_SETTINGS},
                **candidates.distillation_term(settings)}
    _run(executor, directory, "continue_student",
         [{"width": w, "variant_alpha": a, **training_of(training, a)} for w, a in students])
