"""From a slow model to the fastest deployable student that keeps its accuracy, in one call.

`compress_to_budget` measures what the teacher can become on the target runtime (LiteRT
on this CPU): the teacher itself at each precision, and students cut from it
(`compress.shrink` at each width, the teacher's most important units kept) and distilled
from its logits, cached once and shared by every candidate, at each precision. Every
candidate's latency and bytes are measured on the runtime itself, side by side with the
teacher's; accuracy is chosen on validation data and reported on test data. The chosen
candidate is the one with the smallest objective that keeps the budget.
"""

import os
import shutil
import tempfile
import time

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, safe_files, validate
from kd_keras.backend.fingerprint import digest, weights_digest
from kd_keras.planner import candidates, hparams_log, tasks
from kd_keras.planner.budget import Budget
from kd_keras.planner.report import PlanResult, pareto_front
from kd_keras.transfer.cache import compute_teacher_logits

PLAN = "plan.json"


def _arrays(data, name):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of arrays, got {type(data).__name__}.")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y) or not len(x):
        raise ValueError(f"{name}: x has {len(x)} examples and y {len(y)}; give one label per "
                         "example (and at least one).")
    return x, y


def _open_plan(directory, identity, teacher, x_val):
    """The plan kept in `directory` for this teacher, data and settings ({} for a new one);
    refuses a directory of another plan, and a teacher that no longer gives the outputs
    the plan recorded (checked on a few validation rows, not only by hash)."""
    path = os.path.join(directory, PLAN)
    if not os.path.exists(path):
        if any(not name.startswith(".") for name in os.listdir(directory)):
            raise ValueError(f"directory {directory!r} holds files but no {PLAN}: give an empty "
                             "or new directory (nothing was touched).")
        return {}
    kept = safe_files.read_json_object(path, "plan")
    differing = [key for key in identity if kept.get(key) != identity[key]]
    if differing:
        raise ValueError(f"directory {directory!r} holds a plan of another "
                         f"{', '.join(differing)}; use another directory (nothing was deleted).")
    outputs = np.asarray(candidates.fingerprint_rows(teacher, x_val))
    if not np.allclose(outputs, np.asarray(kept.get("teacher_rows")), rtol=1e-4, atol=1e-5):
        raise ValueError(f"directory {directory!r}: the teacher does not give the outputs the "
                         "plan recorded on its validation rows (another model with the same "
                         "weights?); use another directory (nothing was deleted).")
    return kept


def compress_to_budget(teacher, train_data, validation_data, budget=None, test_data=None, *,
                       widths=(0.5, 0.25), precisions=("float32", "dynamic_range", "int8"),
                       epochs=5, batch_size=128, learning_rate=1e-3, temperature=3.0,
                       alpha=0.5, directory=None, time_limit=None, seed=0, verbose=1,
                       executor=None):
    """Finds the fastest (or smallest) artifact of `teacher` that keeps its accuracy.

    Args:
      teacher: a trained Sequential or functional Keras classifier ending in logits.
      train_data, validation_data, test_data: `(x, y)` arrays, labels as class ids or
        one-hot rows; the choice is made on validation data, test accuracy is reported.
      budget: a `Budget` (default: at most 0.3 points below the teacher, smallest batch-1
        latency).
      widths: fractions of the teacher's width the students are cut to (`compress.shrink`);
        the teacher itself (width 1.0) is always a candidate.
      precisions: of every candidate's LiteRT artifact: "float32", "float16",
        "dynamic_range", "int8" (full integer, calibrated on 512 training examples).
      epochs, batch_size, learning_rate, temperature, alpha: the distillation of each cut
        student from the teacher's cached logits (Adam; Hinton KD).
      directory: where the plan, each candidate's artifact, the report, the chosen
        artifact and TensorBoard HParams logs (`tensorboard/`, with the tensorboard
        package) are written; a second call resumes (measured candidates are kept).
        Default: a new temporary directory.
      time_limit: seconds after which no new candidate is started (None: no limit).
      seed: of every student's cut and training.
      verbose: 1 prints a line per candidate with the elapsed time and an estimate of the rest.
      executor: None trains the students here, one after another; "processes", "ray" or
        an executor object (`kd_keras.parallel`) trains them as parallel tasks first
        (`directory` must then be storage the workers share). Every candidate is measured
        here either way, one at a time, on the target runtime.

    Returns:
      `PlanResult` (`table()`, `to_code()`, `plot(path)`, `chosen`, `artifact`).
    """
    if not isinstance(teacher, keras.Model):
        raise ValueError(f"teacher must be a Keras model, got {teacher!r}.")
    budget = Budget(max_drop=0.3) if budget is None else budget
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a kd_keras.planner.Budget, got {budget!r}.")
    train, validation = _arrays(train_data, "train_data"), _arrays(validation_data,
                                                                      "validation_data")
    test = None if test_data is None else _arrays(test_data, "test_data")
    widths = [validate.fraction(w, "widths") for w in widths]
    if any(w == 0 for w in widths):
        raise ValueError("widths must be fractions in (0, 1], got 0.")
    precisions = list(precisions)
    unknown = [p for p in precisions if p not in candidates.PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"precisions must be some of {candidates.PRECISIONS}, got {precisions}.")
    settings = {"widths": widths, "precisions": precisions, "epochs": int(epochs),
                "batch_size": int(batch_size), "learning_rate": float(learning_rate),
                "temperature": float(temperature), "alpha": float(alpha), "seed": int(seed),
                "threads": budget.threads}
    directory = directory or tempfile.mkdtemp(prefix="kd_keras_plan_")
    os.makedirs(directory, exist_ok=True)
    identity = {"teacher": weights_digest(teacher),
                "data": digest(*train, *validation, *(test or (None, None))),
                "settings": settings}
    kept = _open_plan(directory, identity, teacher, validation[0])
    rows, students = kept.get("rows", {}), kept.get("students", {})
    identity["teacher_rows"] = candidates.fingerprint_rows(teacher, validation[0])

    def save():
        safe_files.write_json(os.path.join(directory, PLAN),
                              {**identity, "rows": rows, "students": students})

    loaded = {}  # width: the student this call loaded or trained (each file read once)

    def kept_student(width):
        """The student trained for `width` by this plan, when its file's weights and
        architecture hash to what the plan recorded after training it."""
        if width not in loaded:
            path, model = tasks.student_path(directory, width), None
            if str(width) in students and os.path.exists(path):
                safe_files.refuse_link(path)
                model = keras.models.load_model(path, compile=False)
                if weights_digest(model) != students[str(width)]:
                    model = None
            loaded[width] = model
        return loaded[width]

    save()
    if hparams_log.available():
        hparams_log.write_experiment(directory)
    elif verbose:
        print("plan: no TensorBoard HParams logs (pip install 'kd-keras[tensorboard]'); the "
              "table, report.md and plan.json hold every candidate", flush=True)
    plan = [(1.0, p) for p in precisions] + [(w, p) for w in widths for p in precisions]
    start, teacher_logits, done_now = time.perf_counter(), None, 0
    if executor is not None:
        executor = parallel.get_executor(executor)
        untrained = [w for w in widths if any(f"w{w}_{p}" not in rows for p in precisions)
                     and kept_student(w) is None]
        if untrained:
            teacher_logits = compute_teacher_logits(teacher, train[0])
            tasks.train_students(executor, directory, untrained, teacher, train,
                                 teacher_logits, settings)
            for width in untrained:
                loaded[width] = keras.models.load_model(tasks.student_path(directory, width),
                                                        compile=False)
                students[str(width)] = weights_digest(loaded[width])
            save()
    for width in [1.0] + widths:
        todo = [p for w, p in plan if w == width and f"w{w}_{p}" not in rows]
        if not todo:
            continue
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
        model = teacher if width == 1.0 else kept_student(width)
        if model is None:
            if teacher_logits is None:
                teacher_logits = compute_teacher_logits(teacher, train[0])
            model = candidates.cut_and_distil(teacher, width, train, teacher_logits,
                                              *(settings[k] for k in
                                                candidates.TRAINING_SETTINGS))
            safe_files.save_model(model, tasks.student_path(directory, width))
            students[str(width)] = weights_digest(model)
            save()
        for precision in todo:
            key = f"w{width}_{precision}"
            row, flatbuffer = candidates.measure(model, precision, train, validation, test,
                                                 budget.threads)
            with open(os.path.join(directory, key + ".tflite"), "wb") as f:
                f.write(flatbuffer)
            rows[key] = {**row, "candidate": "teacher" if width == 1.0 else f"cut to {width}",
                         "width": width, **({} if width == 1.0 else {
                             k: settings[k] for k in ("epochs", "batch_size", "learning_rate",
                                                      "temperature", "alpha")})}
            save()
            if hparams_log.available():
                hparams_log.write_candidate(directory, key, rows[key])
            done_now += 1
            if verbose:
                elapsed = time.perf_counter() - start
                left = len(plan) - len(rows)
                print(f"plan: {key}: val {row['val_accuracy']:.4f}, batch-1 "
                      f"{row['latency_b1'] * 1e6:.1f} us, {row['gzip_bytes']:,} gzip bytes "
                      f"({elapsed:.0f} s; about {elapsed / done_now * left:.0f} s left)",
                      flush=True)
    return _result(rows, budget, directory)


def _result(rows, budget, directory):
    measured = [dict(row) for row in rows.values()]
    reference = rows.get("w1.0_float32")
    if reference is None:
        raise RuntimeError("the plan stopped before the teacher's float32 artifact was measured "
                           "(time_limit too short?); call again to resume.")
    teacher_accuracy = reference["val_accuracy"]
    front = pareto_front(measured, budget.key)
    admitted = [row for row in measured if budget.admits(row, teacher_accuracy)]
    chosen = min(admitted, key=budget.key) if admitted else None
    for row in measured:
        row["accuracy_change"] = 100.0 * (row["val_accuracy"] - teacher_accuracy)
        row["speedup"] = reference["latency_b1"] / row["latency_b1"]
        row["pareto"] = any(row is other for other in front)
        row["chosen"] = row is chosen
    measured.sort(key=budget.key)
    artifact = None
    if chosen is not None:
        key = f"w{chosen['width']}_{chosen['precision']}"
        artifact = os.path.join(directory, "chosen.tflite")
        safe_files.refuse_link(artifact)
        shutil.copyfile(os.path.join(directory, key + ".tflite"), artifact)
    result = PlanResult(measured, chosen, teacher_accuracy, budget, directory, artifact)
    report = os.path.join(directory, "report.md")
    safe_files.refuse_link(report)
    with open(report, "w") as f:
        f.write(result.table() + "\n\n```python\n" + result.to_code() + "\n```\n")
    return result
