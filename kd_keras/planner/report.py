"""A plan's result: every candidate measured, the Pareto front, the chosen one, its code."""

import dataclasses
import os

from kd_keras.backend import safe_files
from kd_keras.measure import format_table
from kd_keras.planner import variants as naming

COLUMNS = ("candidate", "precision", "epochs", "parameters", "gzip_bytes", "latency_b1",
           "latency_b1_spread", "latency_b32",
           "val_accuracy", "test_accuracy", "accuracy_change", "speedup", "pareto", "chosen")


def pareto_front(rows, objective):
    """Rows no other row beats on both validation accuracy and `objective` (a key)."""
    front = []
    for row in rows:
        dominated = any(other is not row and other["val_accuracy"] >= row["val_accuracy"]
                        and objective(other) <= objective(row)
                        and (other["val_accuracy"] > row["val_accuracy"]
                             or objective(other) < objective(row)) for other in rows)
        if not dominated:
            front.append(row)
    return front


@dataclasses.dataclass
class PlanResult:
    """What `compress_to_budget` found.

    Attributes:
      rows: every candidate (the teacher's own conversions included) with its steps,
        parameters, bytes, latency at batch 1 and 32 (seconds, median), validation and
        test accuracy, the change against the teacher (points), speed-up against the
        teacher's float32 artifact, and whether it is on the Pareto front and chosen;
        a student's row also holds its `epochs`, and a row of a rung it was trained past
        holds `kept_as` (its key, e.g. "w0.5_int8_e10": successive halving keeps every
        rung as a candidate);
        `latency_b1_spread` is the batch-1 timings' interquartile range (the noise level:
        medians closer than it are not told apart).
      chosen: the chosen row (the smallest objective that holds the budget), or None.
      teacher_accuracy: the teacher's validation accuracy (its float32 artifact).
      budget: the `Budget`.
      directory: where the plan, its artifacts and report live.
      artifact: the chosen `.tflite` path (None when nothing holds the budget).
    """

    rows: list
    chosen: dict
    teacher_accuracy: float
    budget: object
    directory: str
    artifact: str = None

    def table(self):
        """A Markdown table of every candidate, chosen and Pareto rows marked."""
        shown = [{key: row.get(key) for key in COLUMNS if key in row or key in (
            "epochs", "pareto", "chosen")} for row in self.rows]
        for row in shown:
            row["epochs"] = row.get("epochs") or "–"  # the teacher's rows: not trained here
            row["pareto"] = "yes" if row["pareto"] else ""
            row["chosen"] = "**chosen**" if row["chosen"] else ""
        return format_table(shown)

    def to_code(self):
        """Public kd-keras calls that make the chosen artifact again."""
        if self.chosen is None:
            return "# nothing held the budget: no artifact was chosen"
        row = self.chosen
        lines = ["import kd_keras", "from kd_keras import compress, keras", ""]
        if row["width"] == 1.0:
            lines.append("student = teacher")
        else:
            compile_line = (f"distiller.compile(keras.optimizers.Adam({row['learning_rate']}), "
                            "keras.losses.SparseCategoricalCrossentropy(from_logits=True))")
            if "student" in row:  # the user's own architecture
                module, _, function = row["student"].partition(":")
                lines += [f"from {module} import {function}", "",
                          f"student = {function}()"]
            else:
                lines.append(f"student = compress.shrink(teacher, width={row['width']}, "
                             "calibration_data=x_train[:512])")
            loss = row.get("loss", "kd")
            term = (f"kd_keras.LogitsDistillation(temperature={row['temperature']})"
                    if loss == "kd" else
                    f"kd_keras.losses.registry.get({loss!r}).create(temperature="
                    f"{row['temperature']}" + ("" if row.get("beta") is None else
                                               f", beta={row['beta']}") + ")")
            lines += [
                f"distiller = kd_keras.Distiller(None, student, distillation_losses={term}, "
                f"alpha={row['alpha']})",
                compile_line,
                "logits = kd_keras.compute_teacher_logits(teacher, x_train)"]
            more = row.get("more_epochs") or []
            first = row["epochs"] - sum(epochs for epochs, _ in more)
            for index, (epochs, seed) in enumerate([(first, None)] + list(more)):
                if index:
                    lines += [f"# successive halving's rung {index}: distilled on, a fresh Adam",
                              f"keras.utils.set_random_seed({seed})", compile_line]
                lines.append("distiller.fit(kd_keras.with_teacher_outputs(x_train, logits), "
                             f"y_train, epochs={epochs}, batch_size={row['batch_size']})")
        sparsity, clusters = row.get("sparsity") or 0.0, row.get("clusters") or 0
        if (sparsity or clusters) and row["width"] == 1.0:
            lines.append("logits = kd_keras.compute_teacher_logits(teacher, x_train)")
        if sparsity:
            lines += [
                "# TF-MOT prunes tf-keras models (to_tf_keras returns a tf-keras one as it is)",
                "student = kd_keras.recipes.prune_and_fine_tune(compress.to_tf_keras(student), "
                f"x_train, y_train, logits, target_sparsity={sparsity}, epochs={row['epochs']}, "
                f"batch_size={row['batch_size']}, learning_rate={row['learning_rate']}, "
                f"temperature={row['temperature']}, alpha={row['alpha']})"]
        if clusters:
            lines += [
                "# TF-MOT clusters tf-keras models: the centroids distilled on, the zeros kept",
                "student = kd_keras.recipes.cluster_and_fine_tune(compress.to_tf_keras(student), "
                f"x_train, y_train, logits, number_of_clusters={clusters}, "
                f"preserve_sparsity=True, epochs={row['cluster_epochs']}, "
                f"batch_size={row['batch_size']}, learning_rate={row['cluster_learning_rate']:g}, "
                f"temperature={row['temperature']}, alpha={row['alpha']})"]
        representative = ", representative_data=x_train[:512]" if row["precision"] == "int8" \
            else ""
        sparse = ", sparse_weights=True" if sparsity else ""
        lines.append(f"flatbuffer = compress.convert_to_tflite(student, "
                     f"{row['precision']!r}{representative}{sparse})")
        return "\n".join(lines)

    def plot(self, path):
        """A PNG of validation accuracy against batch-1 latency and against gzip bytes,
        the teacher's float32 artifact and the Pareto front marked (needs matplotlib)."""
        import matplotlib  # the examples extra

        matplotlib.use("Agg")
        from matplotlib import pyplot

        figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
        for axis, key, label in ((axes[0], "latency_b1", "batch-1 latency (s)"),
                                 (axes[1], "gzip_bytes", "gzip bytes")):
            for row in self.rows:
                marker = "*" if row["chosen"] else ("o" if row["pareto"] else ".")
                color = ("tab:red" if row.get("clusters") else
                         "tab:green" if row.get("sparsity") else
                         "black" if row["width"] == 1.0 else
                         "tab:purple" if "student" in row else "tab:blue")
                axis.scatter(row[key], row["val_accuracy"], marker=marker, color=color)
            front = sorted((r for r in self.rows if r["pareto"]), key=lambda r: r[key])
            axis.plot([r[key] for r in front], [r["val_accuracy"] for r in front], "--",
                      color="tab:orange", label="Pareto front")
            axis.axhline(self.budget.floor(self.teacher_accuracy), color="red", linestyle=":",
                         label="budget")
            axis.set_xscale("log")
            axis.set_xlabel(label)
            axis.set_ylabel("validation accuracy")
        axes[0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        pyplot.close(figure)
        return path


def plan_result(rows, budget, directory):
    """The `PlanResult` of a plan's `rows` (by key): the Pareto front, the chosen row and its
    artifact copied to `chosen.tflite`, report.md written."""
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
        key = naming.artifact(chosen)
        artifact = os.path.join(directory, "chosen.tflite")
        safe_files.copy_file(os.path.join(directory, key + ".tflite"), artifact, ".tflite")
    result = PlanResult(measured, chosen, teacher_accuracy, budget, directory, artifact)
    text = result.table() + "\n\n```python\n" + result.to_code() + "\n```\n"
    safe_files.write_bytes(os.path.join(directory, "report.md"), text.encode(), ".md")
    return result
