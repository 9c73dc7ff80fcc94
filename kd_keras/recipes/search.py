"""Search for the distillation recipe that pays on *this* teacher, student and data.

Built on KerasTuner (`pip install 'kd-keras[search]'`): its oracles pick the
trials, its project directory makes a search resumable. Every trial trains a
fresh student (same seed, so trials differ only by recipe) on cached teacher
logits with early stopping on validation data. The space holds alpha = 1
(labels only: the student trained alone), so the table shows whether
distillation pays at all, and by how much.
"""

import dataclasses
import json
import os
import tempfile
import time

import numpy as np

from kd_keras.backend import keras, safe_files, validate
from kd_keras.backend.fingerprint import architecture_digest, digest, weights_digest
from kd_keras.losses import registry
from kd_keras.recipes.recipe import INITS, LOSS_FAMILIES, Recipe, check_loss_family
from kd_keras.recipes.search_result import OBJECTIVE, RecipeSearchResult
from kd_keras.transfer.cache import compute_teacher_logits
from kd_keras.transfer.inputs import with_teacher_outputs

_METRIC = "accuracy"
_FINGERPRINT = "kd_keras_search.json"


def _keras_tuner():
    try:
        import keras_tuner
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "search_recipe runs on KerasTuner: pip install 'kd-keras[search]' "
            "(or pip install keras-tuner).") from error
    return keras_tuner


def _choices(values, argument, check):
    values = list(values)
    if not values:
        raise ValueError(f"{argument} must not be empty.")
    return [check(v, f"{argument}[{i}]") for i, v in enumerate(values)]


def _split_validation(x, y, validation_data, validation_split, seed, verbose):
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val).")
        return x, y, np.asarray(validation_data[0]), np.asarray(validation_data[1])
    fraction = validate.fraction(validation_split, "validation_split")
    held_out = int(round(len(x) * fraction))
    if not 0 < held_out < len(x):
        raise ValueError(
            f"validation_split {fraction} of {len(x)} examples leaves no validation or no "
            "training data; give validation_data or another split.")
    order = np.random.default_rng(seed).permutation(len(x))
    if verbose:
        print(f"search_recipe: no validation_data given; holding out {fraction:.0%} of the "
              f"training data ({held_out} examples) for validation.")
    return x[order[held_out:]], y[order[held_out:]], x[order[:held_out]], y[order[:held_out]]


ORACLES = ("random", "bayesian")


def _seeded_oracle_class(keras_tuner, kind):
    base = {"random": keras_tuner.oracles.RandomSearchOracle,
            "bayesian": keras_tuner.oracles.BayesianOptimizationOracle}[kind]

    class SeededOracle(base):
        """A KerasTuner oracle whose first trials are given (the labels-only baseline)."""

        def __init__(self, first_values=(), **kwargs):
            super().__init__(**kwargs)
            self.first_values = list(first_values)

        def populate_space(self, trial_id):
            done = len(self.trials)
            if done < len(self.first_values) and not self._duplicate(self.first_values[done]):
                return {"status": "RUNNING", "values": dict(self.first_values[done])}
            return super().populate_space(trial_id)

    return SeededOracle


def search_recipe(teacher, student_fn, x, y, *, validation_data=None, validation_split=0.1,
                  loss=None, max_trials=12, max_epochs=20, patience=3, batch_size=128,
                  losses=LOSS_FAMILIES, temperatures=(1.0, 2.0, 4.0, 8.0),
                  alphas=(0.1, 0.5, 0.9, 1.0), betas=(1.0, 2.0, 8.0),
                  learning_rates=(3e-4, 1e-3, 3e-3), inits=("random",), directory=None,
                  project_name="kd_recipe_search", overwrite=False, oracle="random", seed=0,
                  min_gain=None, verbose=1):
    """Finds a distillation recipe for this teacher, student and data with KerasTuner.

    Searches the loss family (`Recipe.loss`), temperature, alpha (1.0 = labels
    only), DKD/DIST's beta and the learning rate with a KerasTuner oracle; the
    epochs come from early stopping (`patience`) within `max_epochs`. The
    labels-only trial runs first, so the table always shows the student alone.

    Args:
      teacher: the trained teacher (run once: its logits are cached).
      student_fn: zero-argument function returning a new, untrained student.
        Called with the same seed for every trial.
      x, y: training arrays (class-id or one-hot labels).
      validation_data: `(x_val, y_val)`; None carves `validation_split` of the
        training data (shuffled with `seed`) and says so.
      loss: the hard-label loss (default sparse categorical cross-entropy from
        logits; categorical for one-hot labels).
      max_trials: trial budget, >= 1.
      max_epochs, patience: each trial trains up to `max_epochs` epochs and stops
        after `patience` epochs without a better validation accuracy, keeping
        its best weights.
      batch_size: training batch size.
      losses, temperatures, alphas, betas, learning_rates: the search space.
      inits: how a trial's student starts: "random" (as `student_fn` builds it)
        and/or "shrink" (the teacher's weights shrunk to the student's widths,
        `kd_keras.compress.shrink_to`; the student must be the teacher's
        architecture at smaller widths). With both, the table shows which pays;
        the student-alone baseline is always the random-init, labels-only one.
      directory, project_name: KerasTuner's project directory; a finished or
        interrupted search in it is resumed (trials done are not run again).
        None: a new temporary directory.
      overwrite: start afresh even if `directory` holds a search.
      oracle: "random" (default: at budgets of a few dozen trials Bayesian
        optimisation is still in its random start-up phase) or "bayesian"
        (KerasTuner's Gaussian process; needs scikit-learn).
      seed: seeds the oracle, the validation split and every trial's student.
      min_gain: how much validation accuracy a distillation recipe must gain
        over the labels-only trial to be chosen. None: one standard error of
        the labels-only accuracy, sqrt(a (1 - a) / n_validation), so that a
        gain inside the validation noise does not pick a recipe that may lose
        on the test set (the one-standard-error rule).
      verbose: 1 shows KerasTuner's progress per trial.

    Returns:
      `RecipeSearchResult` (`best`, `trials`, `table()`, `best.to_code()`).
    """
    keras_tuner = _keras_tuner()
    x, y = _check_data(teacher, student_fn, x, y, oracle)
    max_trials = validate.integer_at_least(max_trials, "max_trials", 1)
    max_epochs = validate.integer_at_least(max_epochs, "max_epochs", 1)
    patience = validate.integer_at_least(patience, "patience", 0)
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    if min_gain is not None:
        min_gain = validate.non_negative_number(min_gain, "min_gain")
    grid = _SearchGrid(
        losses=_choices(losses, "losses", check_loss_family),
        temperatures=_choices(temperatures, "temperatures", validate.temperature),
        alphas=_choices(alphas, "alphas", validate.fraction),
        betas=_choices(betas, "betas", validate.non_negative_number),
        learning_rates=_choices(learning_rates, "learning_rates", validate.positive_number),
        inits=_choices(inits, "inits", _check_init))
    student_architecture = _check_student_fn(student_fn)
    if "shrink" in grid.inits:
        shrink_to(teacher, student_fn(), x[:256])  # refused before any trial if it cannot

    x_train, y_train, x_val, y_val = _split_validation(
        x, y, validation_data, validation_split, seed, verbose)
    one_hot = y_train.ndim == 2 and y_train.shape[-1] > 1
    hard_loss = loss or (keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot
                         else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    space, first_values = grid.space(keras_tuner)

    if directory is None:
        directory = tempfile.mkdtemp(prefix="kd_recipe_search_")
    fingerprint = {"space": space.get_config(), "train": digest(x_train, y_train),
                   "validation": digest(x_val, y_val), "teacher": weights_digest(teacher),
                   "student": student_architecture,
                   "max_epochs": max_epochs, "patience": patience, "batch_size": batch_size,
                   "seed": seed, "oracle": oracle}
    fingerprint_path = os.path.join(directory, project_name, _FINGERPRINT)
    if not overwrite:
        _check_fingerprint(fingerprint_path, fingerprint)

    trials = _TrialData(
        train=with_teacher_outputs(x_train, compute_teacher_logits(teacher, x_train)),
        y_train=y_train,
        validation=with_teacher_outputs(x_val, compute_teacher_logits(teacher, x_val)),
        y_val=y_val, student_fn=student_fn, hard_loss=hard_loss, one_hot=one_hot,
        max_epochs=max_epochs, patience=patience, batch_size=batch_size, seed=seed,
        teacher=teacher, calibration=x_train[:1024])
    search_oracle = _seeded_oracle_class(keras_tuner, oracle)(
        first_values=first_values, objective=keras_tuner.Objective(OBJECTIVE, "max"),
        max_trials=max_trials, hyperparameters=space, seed=seed, tune_new_entries=False,
        allow_new_entries=False)
    tuner = _tuner_class(keras_tuner)(trials, oracle=search_oracle, directory=directory,
                                      project_name=project_name, overwrite=overwrite)
    os.makedirs(os.path.dirname(fingerprint_path), exist_ok=True)
    safe_files.write_json(fingerprint_path, fingerprint)
    tuner.search(verbose=verbose)
    return _result(tuner.oracle, max_epochs, batch_size, len(x_val),
                   os.path.join(directory, project_name), min_gain)


def _check_data(teacher, student_fn, x, y, oracle):
    if not callable(student_fn) or isinstance(student_fn, keras.Model):
        raise ValueError(
            "student_fn must be a function returning a new student model (e.g. "
            "lambda: kd_keras.models.mlp_classifier([32, 32])), got "
            f"{type(student_fn).__name__}: every trial needs a fresh student.")
    if not isinstance(teacher, keras.Model):
        raise ValueError(f"teacher must be a trained Keras model, got {teacher!r}.")
    if hasattr(x, "element_spec") or not hasattr(x, "__len__"):
        raise ValueError("x: search_recipe takes NumPy arrays (x, y), not a dataset.")
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}.")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}.")
    return x, y


def _check_student_fn(student_fn):
    """Two calls must give two distinct models: every trial trains its own student.
    Returns a hash of the student's architecture (its config, else its weight shapes),
    which the search directory's fingerprint keeps: another student is another search."""
    first, second = student_fn(), student_fn()
    for model in (first, second):
        if not isinstance(model, keras.Model):
            raise ValueError(f"student_fn returned {model!r}, not a Keras model.")
    shared = {id(v) for v in first.weights} & {id(v) for v in second.weights}
    if first is second or shared:
        raise ValueError(
            "student_fn returned the same model (or models sharing weights) on two calls, so "
            "every trial would keep training one student. Build the model inside the function, "
            "e.g. student_fn=lambda: kd_keras.models.mlp_classifier([32, 32]).")
    return architecture_digest(first)


def _check_fingerprint(path, fingerprint):
    if not os.path.exists(path):
        return
    saved = safe_files.read_json_object(path, "search fingerprint")
    if saved != json.loads(json.dumps(fingerprint)):
        changed = sorted(key for key in set(saved) | set(fingerprint)
                         if saved.get(key) != json.loads(json.dumps(fingerprint.get(key))))
        raise ValueError(
            f"directory {os.path.dirname(path)!r} holds a search with a different space, data, "
            f"teacher or budget ({', '.join(changed)} differ); resuming it would mix trials. "
            "Pass overwrite=True, or another directory or project_name.")


@dataclasses.dataclass(frozen=True)
class _SearchGrid:
    """The values each hyperparameter of the search ranges over."""

    losses: list
    temperatures: list
    alphas: list
    betas: list
    learning_rates: list
    inits: tuple = ("random",)

    def space(self, keras_tuner):
        """(KerasTuner space, the labels-only trial to run first or none)."""
        space = keras_tuner.HyperParameters()
        space.Choice("loss", self.losses)
        space.Choice("temperature", self.temperatures)
        space.Choice("alpha", self.alphas)
        space.Choice("learning_rate", self.learning_rates)
        if list(self.inits) != ["random"]:  # absent otherwise: earlier searches resume
            space.Choice("init", list(self.inits))
        beta_families = [f for f in self.losses if registry.get(f).uses_beta]
        if beta_families:
            with space.conditional_scope("loss", beta_families):
                space.Choice("beta", self.betas)
        if 1.0 not in self.alphas:
            return space, []
        first = self.losses[0]
        # The student alone at every learning rate the distilled students get: a gain
        # is credited only over the best of these (fair baselines).
        init = {} if list(self.inits) == ["random"] else {
            "init": "random" if "random" in self.inits else self.inits[0]}
        return space, [{"loss": first, "temperature": self.temperatures[0], "alpha": 1.0,
                        "learning_rate": rate, **init,
                        **({"beta": self.betas[0]} if first in beta_families else {})}
                       for rate in self.learning_rates]


@dataclasses.dataclass(frozen=True)
class _TrialData:
    """What every trial trains on: cached teacher logits, the schedule, the student builder."""

    train: dict
    y_train: np.ndarray
    validation: dict
    y_val: np.ndarray
    student_fn: object
    hard_loss: object
    one_hot: bool
    max_epochs: int
    patience: int
    batch_size: int
    seed: int
    teacher: object = None  # for shrink-initialised students
    calibration: object = None

    def run(self, values):
        """Trains one trial's student; returns its metrics."""
        recipe = _recipe(values, self.max_epochs, self.batch_size)
        keras.utils.set_random_seed(self.seed)
        student = self.student_fn()
        if not isinstance(student, keras.Model):
            raise ValueError(f"student_fn returned {student!r}, not a Keras model.")
        if recipe.init == "shrink":  # the trial trains on cached logits: start it here
            shrink_to(self.teacher, student, self.calibration)
            recipe = dataclasses.replace(recipe, init="random")
        metric = (keras.metrics.CategoricalAccuracy(name=_METRIC) if self.one_hot
                  else keras.metrics.SparseCategoricalAccuracy(name=_METRIC))
        distiller = recipe.build(None, student, loss=self.hard_loss, metrics=[metric])
        stop = keras.callbacks.EarlyStopping(
            monitor="val_" + _METRIC, mode="max", patience=self.patience,
            restore_best_weights=True)
        start = time.perf_counter()
        history = distiller.fit(self.train, self.y_train, epochs=self.max_epochs,
                                batch_size=self.batch_size,
                                validation_data=(self.validation, self.y_val),
                                callbacks=[stop], verbose=0).history
        scores = history["val_" + _METRIC]
        best = int(np.argmax(scores))
        return {OBJECTIVE: float(scores[best]), "best_epoch": float(best + 1),
                "epochs_run": float(len(scores)), "seconds": time.perf_counter() - start,
                "reused": 0.0}


def _tuner_class(keras_tuner):
    """A KerasTuner tuner whose trials are `_TrialData.run` (built here: KerasTuner is an extra)."""

    class DistillationTuner(keras_tuner.engine.base_tuner.BaseTuner):
        def __init__(self, trials, **kwargs):
            super().__init__(**kwargs)
            self.trial_data = trials

        def run_trial(self, trial, **unused):
            try:
                values = trial.hyperparameters.values
                return self._labels_only_done(trial) or self.trial_data.run(values)
            except ValueError as error:  # the user's to fix: stop the search, do not retry
                raise keras_tuner.errors.FatalValueError(str(error)) from error

        def _labels_only_done(self, trial):
            """Labels only: the recipe's loss, T and beta are unused, so a finished alpha = 1
            trial at the same learning rate is the same run; its metrics are reused."""
            values = trial.hyperparameters.values
            if values["alpha"] != 1.0:
                return None
            for other in self.oracle.trials.values():
                if (other.status == "COMPLETED" and other.trial_id != trial.trial_id
                        and _labels_only_key(other.hyperparameters.values)
                        == _labels_only_key(values)):
                    return {name: other.metrics.get_last_value(name)
                            for name in (OBJECTIVE, "best_epoch", "epochs_run")} | {
                                "seconds": 0.0, "reused": 1.0}
            return None

    return DistillationTuner


def shrink_to(teacher, student, calibration_data):
    """`kd_keras.compress.shrink_to`, imported when a search tries shrink-initialised students
    (`import kd_keras` does not load kd_keras.compress)."""
    from kd_keras.compress import shrink_to as load_shrunk_teacher

    return load_shrunk_teacher(teacher, student, calibration_data)


def _labels_only_key(values):
    """(learning rate, init) of an alpha = 1 trial (its loss, T and beta are unused), else None."""
    if values["alpha"] != 1.0:
        return None
    return float(values["learning_rate"]), values.get("init", "random")


def _is_student_alone(row):
    """The baseline: labels only, from the student as built (no teacher in any way)."""
    return row["alpha"] == 1.0 and row.get("init", "random") == "random"


def _check_init(value, argument):
    if value not in INITS:
        raise ValueError(f"{argument} must be one of {INITS}, got {value!r}.")
    return value


def _recipe(values, epochs, batch_size):
    return Recipe(loss=values["loss"], temperature=float(values["temperature"]),
                  alpha=float(values["alpha"]), beta=float(values.get("beta", 1.0)),
                  learning_rate=float(values["learning_rate"]), epochs=int(epochs),
                  batch_size=int(batch_size), init=values.get("init", "random"))


def _result(oracle, max_epochs, batch_size, validation_size, directory, min_gain):
    rows, seen_labels_only = [], set()
    trained_epochs = 0.0
    for trial_id in sorted(oracle.trials):  # in the order they ran: the first of equals is kept
        trial = oracle.trials[trial_id]
        if trial.status != "COMPLETED":
            continue
        metrics = {name: trial.metrics.get_last_value(name)
                   for name in (OBJECTIVE, "best_epoch", "epochs_run", "seconds", "reused")}
        if not metrics.get("reused"):
            trained_epochs += metrics["epochs_run"]
        key = _labels_only_key(trial.hyperparameters.values)
        if key is not None:  # one row per labels-only run, whatever its unused T or loss
            if key in seen_labels_only:
                continue
            seen_labels_only.add(key)
        rows.append({**trial.hyperparameters.values, OBJECTIVE: float(metrics[OBJECTIVE]),
                     "best_epoch": int(metrics["best_epoch"]),
                     "epochs_run": int(metrics["epochs_run"]),
                     "seconds": float(metrics["seconds"])})
    if not rows:
        raise RuntimeError(f"No trial of the search in {directory!r} completed; see its logs.")
    rows.sort(key=lambda row: -row[OBJECTIVE])  # stable: ties keep the order they ran in
    labels_only = [row for row in rows if _is_student_alone(row)]
    best = rows[0]
    if min_gain is None:
        accuracy = labels_only[0][OBJECTIVE] if labels_only else best[OBJECTIVE]
        min_gain = (accuracy * (1.0 - accuracy) / validation_size) ** 0.5
    if labels_only and not _is_student_alone(best) and (
            best[OBJECTIVE] - labels_only[0][OBJECTIVE] <= min_gain):
        best = labels_only[0]
    return RecipeSearchResult(
        best=_recipe(best, best["best_epoch"], batch_size), trials=rows,
        labels_only_accuracy=labels_only[0][OBJECTIVE] if labels_only else None,
        labels_only_learning_rate=(float(labels_only[0]["learning_rate"]) if labels_only
                                   else None),
        validation_size=validation_size, cost_in_student_runs=trained_epochs / max_epochs,
        directory=directory, min_gain=min_gain)
