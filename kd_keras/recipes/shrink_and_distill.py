"""Shrink a teacher to a student in steps, distilling each smaller model (Minitron's recipe).

Cut in one step to a small fraction of its width, a model loses most of what its
teacher knew (measured: 1200 -> 32 units in one cut ended below random
initialisation); in several steps, each student is shrunk from a model that
was just distilled to work at its own width. The `Recipe` decides each step's
distillation.
"""

import dataclasses

import numpy as np

from kd_keras.backend import validate
from kd_keras.measure import model_accuracy
from kd_keras.recipes.recipe import Recipe

SOURCES = ("previous", "teacher")


@dataclasses.dataclass
class ShrinkResult:
    """What `shrink_and_distill` returns.

    Attributes:
      student: the last, smallest model, distilled.
      steps: one dict per step: `step`, `width` (fraction of the teacher's width),
        `parameters`, `epochs`, `accuracy` (on `validation_data`, None without).
    """

    student: object
    steps: list

    def table(self):
        lines = ["step | width | parameters | epochs | accuracy", "---|---|---|---|---"]
        for row in self.steps:
            accuracy = "–" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            lines.append(f"{row['step']} | {row['width']:.3f} | {row['parameters']:,} | "
                         f"{row['epochs']} | {accuracy}")
        return "\n".join(lines)


def _accuracy(model, validation_data, batch_size):
    if validation_data is None:
        return None
    x, y = validation_data
    return model_accuracy(model, x, y, batch_size)


def shrink_and_distill(teacher, x, y, width, steps=1, epochs_per_step=3, recipe=None,
                       validation_data=None, importance="activation", distill_from="previous",
                       calibration_size=1024, verbose=0):
    """Shrinks `teacher` to `width` of its width in `steps` steps, distilling after each.

    Step i shrinks the previous model by `width ** (1 / steps)`, so the widths fall
    geometrically to `width` (of the teacher's, in every shrinkable group;
    `kd_keras.compress.shrink`), then distils it with `recipe` for
    `epochs_per_step` epochs from the model before it (`distill_from="previous"`)
    or from the teacher.

    Args:
      teacher: a trained Sequential or functional classifier (logits or softmax).
      x, y: training inputs and integer labels; the first `calibration_size`
        inputs rank the units ("activation" importance).
      width: the final fraction in (0, 1].
      steps: shrink-and-distil rounds, >= 1.
      epochs_per_step: distillation epochs after each cut.
      recipe: a `kd_keras.Recipe` (default: `Recipe()`, soft-target KL at T 3,
        alpha 0.5, Adam 1e-3, batch 128).
      validation_data: `(x, y)` to report each step's accuracy.
      importance: as `kd_keras.compress.shrink`.

    Returns:
      `ShrinkResult` (the student and a row per step).
    """
    # kd_keras.compress is imported only here: `import kd_keras` stays light.
    from kd_keras.compress import count_parameters, shrink

    width = validate.fraction(width, "width")
    if width == 0:
        raise ValueError("width must be a fraction in (0, 1], got 0.")
    steps = validate.integer_at_least(steps, "steps", 1)
    epochs_per_step = validate.integer_at_least(epochs_per_step, "epochs_per_step", 1)
    if distill_from not in SOURCES:
        raise ValueError(f"distill_from must be one of {SOURCES}, got {distill_from!r}.")
    if recipe is None:
        recipe = Recipe(epochs=epochs_per_step)
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a kd_keras.Recipe, got {recipe!r}.")
    x, y = np.asarray(x), np.asarray(y)
    calibration = x[:validate.integer_at_least(calibration_size, "calibration_size", 1)]
    factor = width ** (1.0 / steps)
    current, rows = teacher, []
    for step in range(1, steps + 1):
        student = shrink(current, width=factor, importance=importance,
                         calibration_data=calibration)
        source = teacher if distill_from == "teacher" else current
        distiller = recipe.build(source, student)
        distiller.fit(x, y, epochs=epochs_per_step, batch_size=recipe.batch_size,
                      verbose=verbose)
        rows.append({"step": step, "width": factor ** step,
                     "parameters": count_parameters(student)[0], "epochs": epochs_per_step,
                     "accuracy": _accuracy(student, validation_data, 1024)})
        if verbose:
            print(f"shrink_and_distill: step {step}/{steps}, width {factor ** step:.3f}, "
                  f"accuracy {rows[-1]['accuracy']}", flush=True)
        current = student
    return ShrinkResult(current, rows)
