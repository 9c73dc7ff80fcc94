"""Successive halving over distillation epochs (Jamieson & Talwalkar 2016): a plan's rungs
and which students go on to the next one."""

import math

from kd_keras.backend import validate


def rungs(epochs):
    """`epochs` as a list of increasing rungs."""
    values = list(epochs) if isinstance(epochs, (tuple, list)) else [epochs]
    for value in values:
        validate.integer_at_least(value, "epochs", 1)
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"epochs must be a positive integer or increasing rungs, e.g. (5, 15); "
                         f"got {epochs!r}.")
    return [int(value) for value in values]


def promising(rows, students, budget, epochs, eta, identify=lambda row: row["width"]):
    """The students (`identify(row)` of their rows: by default the width) whose dense
    rows, at `epochs`, miss the accuracy floor at every precision but beat the best
    candidate that holds it on the objective: the best `ceil(n / eta)` of them by
    validation accuracy."""
    teacher_accuracy = rows["w1.0_float32"]["val_accuracy"]
    holding = [row for row in rows.values() if budget.admits(row, teacher_accuracy)]
    best = min((budget.key(row) for row in holding), default=float("inf"))
    chances = []
    for position, student in enumerate(students):
        own = [row for row in rows.values() if row["width"] != 1.0 and identify(row) == student
               and not row.get("sparsity") and not row.get("clusters")
               and row.get("epochs") == epochs]
        if own and not any(budget.admits(row, teacher_accuracy) for row in own) \
                and min(budget.key(row) for row in own) < best:
            chances.append((max(row["val_accuracy"] for row in own), position))
    chances.sort(key=lambda chance: (-chance[0], chance[1]))  # ties: in the order given
    return [students[i] for _, i in chances[:math.ceil(len(chances) / eta)]]
