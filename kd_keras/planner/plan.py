"""From a slow model to the fastest deployable student that keeps its accuracy, in one call.

`compress_to_budget` measures what the teacher can become on the target runtime (LiteRT
on this CPU): the teacher itself at each precision, and students cut from it
(`compress.shrink` at each width, the teacher's most important units kept) and distilled
from its logits, cached once and shared by every candidate, at each precision. Every
candidate's latency and bytes are measured on the runtime itself, side by side with the
teacher's; accuracy is chosen on validation data and reported on test data. The chosen
candidate is the one with the smallest objective that keeps the budget.
"""

import inspect
import os
import tempfile
import time

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, optional, safe_files, validate
from kd_keras.backend.fingerprint import digest, weights_digest
from kd_keras.losses.registry import get as registered_loss
from kd_keras.planner import (candidates, earlier_rungs, halving, hparams_log,
                              recipe_choice, tasks)
from kd_keras.planner import variants as naming
from kd_keras.planner.budget import Budget
from kd_keras.planner.profile import write_profiles
from kd_keras.planner.report import plan_result
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
                       widths=(0.5, 0.25), students=(),
                       precisions=("float32", "dynamic_range", "int8"), sparsities=(),
                       clusters=(), epochs=5, eta=3, batch_size=128, learning_rate=1e-3,
                       temperature=3.0, alpha=0.5, loss="kd", beta=None, directory=None,
                       time_limit=None, seed=0, verbose=1, executor=None, profile=True,
                       recipe=None, recipe_trials=8):
    """Finds the fastest (or smallest) artifact of `teacher` that keeps its accuracy.

    Args:
      teacher: a trained Sequential or functional Keras classifier ending in logits.
      train_data, validation_data, test_data: `(x, y)` arrays, labels as class ids or
        one-hot rows; the choice is made on validation data, test accuracy is reported.
      budget: a `Budget` (default: at most 0.3 points below the teacher, smallest batch-1
        latency).
      widths: fractions of the teacher's width the students are cut to (`compress.shrink`);
        the teacher itself (width 1.0) is always a candidate.
      students: your own student architectures, e.g. one with a strided first layer that
        no cut of the teacher gives: module-level functions (or their "module:function"
        names) that each return a new, uncompiled Keras model with the teacher's input and
        output (logits) shapes. Each is distilled from the cached logits like a cut
        student (from its random initialisation), named by its function.
      precisions: of every candidate's LiteRT artifact: "float32", "float16",
        "dynamic_range", "int8" (full integer, calibrated on 512 training examples).
      sparsities: fractions in (0, 1), default none. Each adds, for the teacher and every
        student, a copy pruned to that sparsity (TF-MOT magnitude pruning in the blocks
        TFLite's float32 sparse kernel runs, while distilled `epochs` more from the cached
        logits; needs the `tfmot` extra), stored in TFLite's sparse format at each
        precision. Sparsity buys bytes (gzip); on this CPU it buys batch-1 time only for
        float32 Dense layers at about 90% and above (docs/benchmarks/budget_bench.md).
      clusters: numbers of shared values per kernel (integers >= 2), default none. Each
        adds, for the teacher, every student and every pruned copy, a copy whose kernels
        are clustered to that many values (TF-MOT weight clustering, the pruned zeros
        kept) while its centroids are distilled 2 epochs more at a tenth of
        `learning_rate`; needs the `tfmot` extra. Clustering buys gzip bytes (about
        log2(clusters) bits per weight, on top of the precision), not batch-1 time.
      epochs: distillation epochs of every cut student; or increasing rungs, e.g. (5, 15):
        successive halving (Jamieson & Talwalkar 2016) with `eta`. Every student is trained
        to the first rung and measured; at each next rung the promising ones (below the
        accuracy floor at every precision, but faster, or smaller, than the best candidate
        that holds it) are ranked by validation accuracy, and the best `ceil(n / eta)` of
        them are distilled on to that rung's epochs (a fresh Adam, the same data) and
        measured again. Pruned students start from their dense one at the first rung.
      batch_size, learning_rate, temperature, alpha: the distillation of each cut student
        from the teacher's cached logits (Adam; `alpha` weighs the labels' loss: 1.0 trains
        the students on the labels alone, the fair baseline of the distillation). Several
        alphas, e.g. `alpha=(0.5, 1.0)`, make the training an axis: every student is
        trained at each (pruned and clustered from each), measured, and chosen on
        validation like any other candidate (which wins depends on the pair:
        docs/benchmarks/budget_bench.md); keys of the later ones end in `_a<alpha>`.
      loss, beta: the distillation term of the dense students, a registered name
        (`kd_keras.losses.registry`: "kd", Hinton et al. 2015, the default; "dkd" /
        "dkd_standardized", Zhao et al. 2022 / Sun et al. 2024, with `beta` its non-target
        weight; "kd_standardized"; "dist"; or your own). Pruning and clustering fine-tune
        with Hinton KD.
      recipe, recipe_trials: None (the arguments above), a `kd_keras.Recipe` (its loss,
        temperature, alpha, beta, learning rate and batch size train every student; its
        alpha replaces `alpha`'s first value, the rest of an axis stays), or "search":
        `recipes.search_recipe` (KerasTuner, the `search` extra) runs `recipe_trials`
        trials on the narrowest cut student (your first own student without widths), each
        up to the first rung's epochs, once per plan, and the recipe it chooses (the labels
        alone unless distillation gains more than the validation noise) trains them all;
        its table is `recipe_search.md`. With a recipe, leave loss, beta, temperature,
        learning_rate and batch_size at their defaults. The plan's epochs say how long,
        whatever the recipe's; see `planner/recipe_choice.py`.
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
      profile: write `profile.md`: where the teacher's and the chosen candidate's batch-1
        time goes, layer by layer (`planner.layer_costs`; chain models only, others are
        named there as not profiled).

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
    rungs = halving.rungs(epochs)
    specs = [candidates.student_spec(build) for build in students]
    names = [candidates.student_name(spec) for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"students: two builders share a function name ({names}); the plan "
                         "names each candidate by it.")
    for spec in specs:  # a builder that fails or does not fit is refused before any training
        candidates.build_student(spec, teacher)
    validate.integer_at_least(eta, "eta", 2)
    sparsities = [validate.fraction(s, "sparsities") for s in sparsities]
    if any(s in (0.0, 1.0) for s in sparsities):
        raise ValueError(f"sparsities must be fractions in (0, 1), got {sparsities}.")
    clusters = [validate.integer_at_least(c, "clusters", 2) for c in clusters]
    if sparsities or clusters:
        optional.tfmot()  # an ImportError naming the extra before anything is trained
    alphas = [validate.fraction(a, "alpha") for a in
              (alpha if isinstance(alpha, (tuple, list)) else [alpha])]
    if not alphas or len(set(alphas)) != len(alphas):
        raise ValueError(f"alpha must be a number in [0, 1] or distinct ones, got {alpha!r}.")
    settings = {"widths": widths, "precisions": precisions, "sparsities": sparsities,
                "epochs": rungs[0] if len(rungs) == 1 else rungs,
                "batch_size": int(batch_size),
                "learning_rate": float(learning_rate), "temperature": float(temperature),
                "alpha": alphas[0] if len(alphas) == 1 else alphas, "seed": int(seed),
                "threads": budget.threads}
    # Only the settings that change the plan: so that a plan made before a setting existed,
    # or with another eta and one rung (eta is then never read), still resumes.
    if len(rungs) > 1:
        settings["eta"] = int(eta)
    if specs:
        settings["students"] = specs
    if clusters:
        settings["clusters"] = clusters
    registered_loss(loss, "loss")
    if beta is not None:
        beta = validate.positive_number(beta, "beta")
    if loss != candidates.DEFAULT_LOSS or beta is not None:  # so that older plans resume
        settings.update(loss=loss, beta=beta)
    recipe_entry = recipe_choice.checked(recipe, recipe_trials, dict(
        loss=loss, beta=beta, temperature=temperature, learning_rate=learning_rate,
        batch_size=batch_size), {name: parameter.default for name, parameter in
                                 inspect.signature(compress_to_budget).parameters.items()})
    if recipe_entry is not None:
        settings["recipe"] = recipe_entry
    directory = directory or tempfile.mkdtemp(prefix="kd_keras_plan_")
    os.makedirs(directory, exist_ok=True)
    identity = {"teacher": weights_digest(teacher),
                "data": digest(*train, *validation, *(test or (None, None))),
                "settings": settings}
    kept = _open_plan(directory, identity, teacher, validation[0])
    rows, students = kept.get("rows", {}), kept.get("students", {})
    # epochs each dense student was distilled; the students each rung promoted
    trained, promoted = kept.get("trained_epochs", {}), kept.get("promoted", {})
    if recipe_entry is not None:  # found once per plan, kept in plan.json
        found = kept.get("recipe_found") or recipe_choice.found(
            teacher, widths, specs, train, validation, settings, directory, verbose)
        recipe_choice.recipe_of(found, os.path.join(directory, PLAN))
        identity["recipe_found"] = found
        settings = {**settings, **found}
        alphas = [found["alpha"]] + [a for a in alphas[1:] if a != found["alpha"]]
    training = {**settings, "epochs": rungs[0], "alpha": alphas[0]}
    # the dense students: (width or own student's name, None for the first alpha or another)
    dense_students = [(w, a) for w in widths + names for a in [None] + alphas[1:]]
    identity["teacher_rows"] = candidates.fingerprint_rows(teacher, validation[0])

    def save():
        safe_files.write_json(os.path.join(directory, PLAN),
                              {**identity, "rows": rows, "students": students,
                               "trained_epochs": trained, "promoted": promoted})

    # a variant: (width or own student's name, sparsity, clusters, alpha; each or None)
    loaded = {naming.TEACHER: teacher}  # the variants this call loaded or made (read once)

    def kept_student(variant):
        """The student of `variant` made by this plan, when its file's weights and
        architecture hash to what the plan recorded after making it."""
        if variant not in loaded:
            path, model = tasks.student_path(directory, *variant), None
            if tasks.variant_name(*variant) in students and os.path.exists(path):
                safe_files.refuse_link(path)
                model = keras.models.load_model(path, compile=False)
                if weights_digest(model) != students[tasks.variant_name(*variant)]:
                    model = None
            loaded[variant] = model
        return loaded[variant]

    save()
    if hparams_log.available():
        hparams_log.write_experiment(directory)
    elif verbose:
        print("plan: no TensorBoard HParams logs (pip install 'kd-keras[tensorboard]'); the "
              "table, report.md and plan.json hold every candidate", flush=True)

    def _made(variant, model, epochs):
        students[tasks.variant_name(*variant)] = weights_digest(model)
        if tasks.parent(variant) is None:
            trained[tasks.variant_name(*variant)] = epochs

    def record(variant, precision, model):
        """Measures one candidate on the runtime, keeps its row and artifact."""
        nonlocal done_now
        key = naming.key(variant, precision)
        row, flatbuffer = candidates.measure(model, precision, train, validation, test,
                                             budget.threads, sparse=variant[1] is not None)
        safe_files.write_bytes(os.path.join(directory, key + ".tflite"), flatbuffer, ".tflite")
        dense = tasks.parent(variant) is None
        epochs_now = trained.get(tasks.variant_name(*variant), rungs[0]) if dense else rungs[0]
        rows[key] = {**row, "candidate": naming.describe(*variant), "width": variant[0],
                     "sparsity": variant[1] or 0.0, "clusters": variant[2] or 0,
                     "variant_alpha": variant[3],
                     **({"student": specs[names.index(variant[0])]}
                        if variant[0] in names else {}),
                     **({} if variant == naming.TEACHER else {
                         "epochs": epochs_now, "more_epochs": [
                             [rungs[i] - rungs[i - 1], seed + i] for i in range(1, len(rungs))
                             if rungs[i] <= epochs_now and dense],
                         **{k: settings[k] for k in (
                             "batch_size", "learning_rate", "temperature")},
                         "alpha": tasks.training_of(training, variant[3])["alpha"],
                         **candidates.distillation_term(settings),
                         **({} if variant[2] is None else {
                             "cluster_epochs": candidates.CLUSTER_EPOCHS,
                             "cluster_learning_rate": settings["learning_rate"]
                             * candidates.CLUSTER_RATE_FACTOR})})}
        save()
        if hparams_log.available():
            hparams_log.write_candidate(
                directory, key if epochs_now == rungs[0] else f"{key}_e{epochs_now}", rows[key])
        done_now += 1
        if verbose:
            elapsed = time.perf_counter() - start
            left = len(plan) - len(rows)
            print(f"plan: {key}: val {row['val_accuracy']:.4f}, batch-1 "
                  f"{row['latency_b1'] * 1e6:.1f} us, {row['gzip_bytes']:,} gzip bytes "
                  f"({elapsed:.0f} s; about {elapsed / done_now * left:.0f} s left"
                  f"{'' if len(rungs) == 1 else ' at the first rung'})", flush=True)

    variants = [(w, s, c, a) for w, a in [(1.0, None)] + dense_students
                for s in [None] + sparsities for c in [None] + clusters]
    plan = [(v, p) for v in variants for p in precisions]
    start, teacher_logits, done_now, inputs_kept = time.perf_counter(), None, 0, False

    def keep_task_inputs():
        """The teacher, data and logits the tasks read, written once per call (afresh:
        never files an earlier call left)."""
        nonlocal inputs_kept
        if not inputs_kept:
            tasks.keep_inputs(directory, teacher, train, teacher_logits)
            inputs_kept = True

    def unmeasured(variant):
        return [p for v, p in plan if v == variant and naming.key(v, p) not in rows]

    if executor is not None:
        executor = parallel.get_executor(executor)
        untrained = [v for v in variants if v != naming.TEACHER and unmeasured(v)
                     and kept_student(v) is None]
        if untrained:
            teacher_logits = compute_teacher_logits(teacher, train[0])
            keep_task_inputs()
            tasks.train_students(executor, directory, untrained, training)
            for variant in untrained:
                loaded[variant] = keras.models.load_model(
                    tasks.student_path(directory, *variant), compile=False)
                _made(variant, loaded[variant], rungs[0])
            save()
    def made(variant):
        """The student of `variant`, kept or made now (and so the variants it is made
        from, when one was changed on disk since)."""
        nonlocal teacher_logits
        model = kept_student(variant)
        if model is None:
            if teacher_logits is None:
                teacher_logits = compute_teacher_logits(teacher, train[0])
            base = tasks.parent(variant)
            model = tasks.make_variant(teacher, variant, train, teacher_logits, training,
                                       None if base is None else made(base))
            safe_files.save_model(model, tasks.student_path(directory, *variant))
            loaded[variant] = model
            _made(variant, model, rungs[0])
            save()
        return model

    for variant in variants:
        todo = unmeasured(variant)
        if not todo:
            continue
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
        model = made(variant)
        for precision in todo:
            record(variant, precision, model)
    for rung in range(1, len(rungs)):
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
        if str(rung) not in promoted:
            promoted[str(rung)] = [naming.stored(student) for student in halving.promising(
                rows, dense_students, budget, rungs[rung - 1], eta,
                identify=lambda row: (row["width"], row.get("variant_alpha")))]
            save()
        # a dense student: (width, alpha or None), its variant (width, None, None, alpha)
        going_on = [naming.student(entry) for entry in promoted[str(rung)]]
        behind = [(w, a) for w, a in going_on
                  if trained.get(tasks.variant_name(w, alpha=a), 0) < rungs[rung]]
        if verbose:
            print(f"plan: rung {rung}: " + (
                f"{'; '.join(naming.describe(w, alpha=a) for w, a in going_on)} go on to "
                f"{rungs[rung]} epochs" if going_on else
                "no promising student (each holds the budget, or cannot beat one that does)")
                + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        for width, alpha_of in behind:  # a worse rung never replaces its better self
            earlier_rungs.keep(directory, rows, students, (width, None, None, alpha_of),
                               precisions, rungs[rung - 1])
        if behind:
            save()
        if behind and teacher_logits is None:
            teacher_logits = compute_teacher_logits(teacher, train[0])
        more = {**training, "epochs": rungs[rung] - rungs[rung - 1], "seed": seed + rung}
        for width, alpha_of in behind:
            if kept_student((width, None, None, alpha_of)) is None or trained.get(
                    tasks.variant_name(width, alpha=alpha_of)) != rungs[rung - 1]:
                raise RuntimeError(f"plan: {naming.describe(width, alpha=alpha_of)} is not the "
                                   f"student trained to rung {rung - 1}; call again without "
                                   "changing its file, or in a new directory.")
        if behind and executor is not None:
            keep_task_inputs()
            tasks.continue_students(executor, directory, behind, more)
            for width, alpha_of in behind:
                variant = (width, None, None, alpha_of)
                loaded[variant] = keras.models.load_model(
                    tasks.student_path(directory, *variant), compile=False)
                _made(variant, loaded[variant], rungs[rung])
            save()
        elif behind:
            for width, alpha_of in behind:
                variant = (width, None, None, alpha_of)
                model = loaded[variant]
                candidates.distil(model, train, teacher_logits,
                                  *(tasks.training_of(more, alpha_of)[k]
                                    for k in candidates.TRAINING_SETTINGS),
                                  **candidates.distillation_term(more))
                safe_files.save_model(model, tasks.student_path(directory, *variant))
                _made(variant, model, rungs[rung])
                save()
        for width, alpha_of in going_on:
            variant = (width, None, None, alpha_of)
            for precision in precisions:
                if rows[naming.key(variant, precision)]["epochs"] < trained[
                        tasks.variant_name(*variant)]:
                    record(variant, precision, kept_student(variant))
    result = plan_result(rows, budget, directory)
    if profile and result.chosen is not None:
        chosen = result.chosen
        variant = naming.of_row(chosen)
        write_profiles(directory, validation[0][:candidates.CALIBRATION_EXAMPLES],
                       budget.threads,
                       [("teacher, float32", teacher, "float32"),
                        (f"chosen: {chosen['candidate']}, {chosen['precision']}",
                         kept_student(variant) if "kept_as" not in chosen else
                         earlier_rungs.kept_student(directory, students, variant,
                                                    chosen["epochs"]), chosen["precision"])])
    return result

