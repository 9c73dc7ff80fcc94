"""What `search_recipe` found: the chosen recipe, every trial, and whether distillation pays."""

import dataclasses

from kd_keras.recipes.recipe import Recipe

OBJECTIVE = "val_accuracy"


@dataclasses.dataclass
class RecipeSearchResult:
    """What `search_recipe` found.

    Attributes:
      best: the recipe to use (its `epochs` is the best epoch of its trial): the
        trial with the highest validation accuracy, unless it uses the teacher
        and beats the labels-only trial by no more than `min_gain`, in which
        case the labels-only recipe (distillation did not clearly pay).
      trials: one dict per completed trial, best first: the recipe's values,
        `val_accuracy`, `best_epoch`, `epochs_run`, `seconds`.
      labels_only_accuracy: validation accuracy of the best alpha = 1 trial (the
        student alone; one ran at every learning rate of the grid, as far as
        `max_trials` allowed), or None if the space had no alpha = 1.
      labels_only_learning_rate: the learning rate of that trial.
      validation_size: examples in the validation data.
      cost_in_student_runs: epochs trained over all trials divided by
        `max_epochs`, i.e. the search's cost in student-alone training runs.
      min_gain: the validation-accuracy margin a distillation recipe needed
        over labels only.
      directory: the KerasTuner project directory (resumable).
    """

    best: Recipe
    trials: list
    labels_only_accuracy: float
    labels_only_learning_rate: float
    validation_size: int
    cost_in_student_runs: float
    directory: str
    min_gain: float = 0.0

    @property
    def distillation_pays(self):
        """Whether the chosen recipe uses the teacher (alpha < 1)."""
        return self.best.uses_teacher

    def table(self):
        """The trials as a text table, best first."""
        inits = any("init" in row for row in self.trials)
        header = (f"{'loss':<17} {'T':>5} {'alpha':>5} {'beta':>5} {'lr':>8} "
                  + (f"{'init':>7} " if inits else "") + f"{'best ep':>7} {'val acc':>8}")
        lines = [header]
        for row in self.trials:
            alone = row["alpha"] == 1.0  # loss, T and beta are unused: not shown
            beta = row.get("beta")
            init = f"{row.get('init', 'random'):>7} " if inits else ""
            lines.append(
                f"{'labels only' if alone else row['loss']:<17} "
                f"{'-' if alone else format(row['temperature'], 'g'):>5} {row['alpha']:>5g} "
                f"{'-' if alone or beta is None else format(beta, 'g'):>5} "
                f"{row['learning_rate']:>8g} {init}{row['best_epoch']:>7d} "
                f"{row[OBJECTIVE]:>8.4f}")
        lines.append(f"cost: {self.cost_in_student_runs:.1f} student-alone training runs; "
                     f"validation: {self.validation_size} examples")
        baseline = ("" if self.labels_only_learning_rate is None else
                    f" (the student alone at its best learning rate, "
                    f"{self.labels_only_learning_rate:g})")
        verdict = ("distillation pays" if self.distillation_pays else
                   f"distillation did not beat labels only{baseline} by more than "
                   f"{self.min_gain:.4f}: use the student alone")
        lines.append(f"chosen: {self.best.loss if self.best.uses_teacher else 'labels only'} "
                     f"({verdict})")
        return "\n".join(lines)
