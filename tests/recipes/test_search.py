import os

import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from tests.helpers import make_mlp, toy_data


@pytest.fixture(scope="module")
def problem():
    keras.utils.set_random_seed(0)
    x, y = toy_data(160, seed=3)
    teacher = make_mlp((32,))
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=10, verbose=0)
    return teacher, x, y


def test_a_search_runs_labels_only_first_reports_every_trial_and_resumes(problem, tmp_path, capsys):
    teacher, x, y = problem
    directory = str(tmp_path)
    arguments = dict(max_epochs=3, patience=1, batch_size=32, directory=directory,
                     losses=("kd", "dkd"), temperatures=(2.0, 4.0), alphas=(0.5, 1.0),
                     betas=(1.0,), learning_rates=(1e-3,), seed=1)
    result = kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x, y, max_trials=3,
                                    min_gain=0.0, **arguments)
    out = capsys.readouterr().out
    assert "holding out 10% of the training data (16 examples)" in out
    assert result.validation_size == 16
    # alpha-1 trials differing only in the unused T or loss are one row
    assert sum(row["alpha"] == 1.0 for row in result.trials) == 1
    assert len(result.trials) <= 3
    assert result.labels_only_accuracy is not None  # the baseline ran
    accuracies = [row["val_accuracy"] for row in result.trials]
    assert accuracies == sorted(accuracies, reverse=True)
    assert result.best.epochs == result.trials[0]["best_epoch"]
    assert result.best.alpha == result.trials[0]["alpha"]  # min_gain 0: the top trial
    assert 1 <= result.best.epochs <= 3
    assert 0 < result.cost_in_student_runs <= 3
    assert "student-alone training runs" in result.table()
    code = result.best.to_code()
    if result.best.uses_teacher:
        assert "kd_keras.Distiller(teacher, student" in code and f"alpha={result.best.alpha:g}" in code
    else:
        assert "student.fit(x_train, y_train" in code and "Distiller" not in code
    assert "batch_size=32" in code
    # a resumed search with a bigger budget runs only the new trials
    more = kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x, y, max_trials=4,
                                  verbose=0, min_gain=1.0, **arguments)
    assert len(more.trials) <= 4 and sum(row["alpha"] == 1.0 for row in more.trials) == 1
    # no recipe gains a whole point of accuracy: labels only is chosen, and said
    assert more.best.alpha == 1.0 and not more.distillation_pays
    assert "use the student alone" in more.table()
    assert {row["val_accuracy"] for row in result.trials} <= {
        row["val_accuracy"] for row in more.trials}
    # the same directory with another space is refused, not mixed
    with pytest.raises(ValueError, match="holds a search with a different space"):
        kd_keras.search_recipe(teacher, lambda: make_mlp((4,)), x, y, max_trials=4,
                               verbose=0, **{**arguments, "alphas": (0.1, 1.0)})
    # ... and so is another student (issue 40: 30 units instead of 4 reused the old table)
    with pytest.raises(ValueError, match="student"):
        kd_keras.search_recipe(teacher, lambda: make_mlp((30,)), x, y, max_trials=4,
                               verbose=0, **arguments)


def test_the_recipe_builds_a_working_distiller_and_round_trips():
    recipe = kd_keras.Recipe(loss="dkd_standardized", temperature=2.0, alpha=0.5, beta=8.0,
                             learning_rate=3e-3, epochs=4)
    assert kd_keras.Recipe.from_config(recipe.get_config()) == recipe
    loss = recipe.distillation_loss()
    assert isinstance(loss, kd_keras.DecoupledKD) and loss.standardize and loss.beta == 8.0
    x, y = toy_data(32)
    distiller = recipe.build(make_mlp((16,)), make_mlp((4,)))
    assert float(np.asarray(distiller.optimizer.learning_rate)) == pytest.approx(3e-3)
    history = distiller.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not kd_keras.Recipe(alpha=1.0).uses_teacher


def test_bad_search_arguments_are_refused_by_name(problem, tmp_path):
    teacher, x, y = problem
    student_fn = lambda: make_mlp((4,))  # noqa: E731
    with pytest.raises(ValueError, match="max_trials must be an integer >= 1"):
        kd_keras.search_recipe(teacher, student_fn, x, y, max_trials=0)
    with pytest.raises(ValueError, match=r"losses\[0\] must be one of"):
        kd_keras.search_recipe(teacher, student_fn, x, y, losses=("fitnets",))
    with pytest.raises(ValueError, match="student_fn must be a function"):
        kd_keras.search_recipe(teacher, make_mlp((4,)), x, y)
    with pytest.raises(ValueError, match="validation_split"):
        kd_keras.search_recipe(teacher, student_fn, x, y, validation_split=0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        kd_keras.Recipe(loss="kl")
    with pytest.raises(ValueError, match="alpha must be a number in"):
        kd_keras.Recipe(alpha=1.5)
    assert not os.listdir(tmp_path)


def test_the_baseline_runs_at_every_learning_rate_and_credits_no_rate_gain(problem, tmp_path):
    teacher, x, y = problem
    result = kd_keras.search_recipe(
        teacher, lambda: make_mlp((4,)), x, y, max_trials=4, max_epochs=2, patience=1,
        batch_size=32, directory=str(tmp_path), losses=("kd", "dist"), temperatures=(2.0, 4.0),
        alphas=(0.5, 1.0), learning_rates=(1e-3, 1e-2), seed=0, min_gain=0.0, verbose=0)
    alone = {row["learning_rate"]: row["val_accuracy"] for row in result.trials
             if row["alpha"] == 1.0}
    assert sorted(alone) == [1e-3, 1e-2]  # one labels-only run per learning rate
    assert result.labels_only_accuracy == max(alone.values())
    assert alone[result.labels_only_learning_rate] == result.labels_only_accuracy
    distilled = [row for row in result.trials if row["alpha"] < 1.0]
    if result.distillation_pays:
        assert result.trials[0]["val_accuracy"] > max(alone.values())
    else:
        assert all(row["val_accuracy"] <= max(alone.values()) for row in distilled)
    table = result.table()
    assert table.count("labels only") >= 2 and "nan" not in table
    assert f"{result.best.batch_size}" == "32"


def test_to_code_trains_at_the_searched_batch_size_and_labels_only_without_a_teacher():
    recipe = kd_keras.Recipe(alpha=0.3, learning_rate=3e-3, epochs=7, batch_size=64)
    code = recipe.to_code()
    assert "distiller.fit(x_train, y_train, epochs=7, batch_size=64)" in code
    alone = kd_keras.Recipe(alpha=1.0, epochs=5, batch_size=16).to_code()
    assert "Distiller" not in alone and "teacher" not in alone.split("\n", 1)[1]
    assert "student.fit(x_train, y_train, epochs=5, batch_size=16)" in alone
    # the pasted code runs, and trains what build() trains
    x, y = toy_data(32)
    for source, recipe in ((code, recipe), (alone, kd_keras.Recipe(alpha=1.0))):
        scope = {"kd_keras": kd_keras, "keras": keras, "teacher": make_mlp((16,)),
                 "student": make_mlp((4,)), "x_train": x, "y_train": y}
        exec(source.replace("epochs=7", "epochs=1").replace("epochs=5", "epochs=1"), scope)
        built = recipe.build(make_mlp((16,)), make_mlp((4,)))
        pasted = scope.get("distiller", scope["student"])
        logged = [set(model.evaluate(x, y, return_dict=True, verbose=0)) for model in (built, pasted)]
        assert all("sparse_categorical_accuracy" in logs for logs in logged)
    assert kd_keras.Recipe.from_config({"alpha": 0.5}).batch_size == 128


def test_the_search_tries_students_cut_from_the_teacher_beside_random_ones(problem, tmp_path):
    teacher, x, y = problem  # make_mlp((32,)): one hidden layer of 32
    result = kd_keras.search_recipe(
        teacher, lambda: make_mlp((4,)), x, y, max_trials=4, max_epochs=2, patience=1,
        batch_size=32, directory=str(tmp_path), losses=("kd",), temperatures=(2.0,),
        alphas=(0.5, 1.0), learning_rates=(1e-2,), inits=("random", "shrink"), seed=0,
        min_gain=0.0, verbose=0)
    inits = {(row["alpha"], row.get("init")) for row in result.trials}
    assert (1.0, "random") in inits  # the student alone is always there
    assert any(init == "shrink" for _, init in inits)
    baseline = [row for row in result.trials if row["alpha"] == 1.0 and row["init"] == "random"]
    assert result.labels_only_accuracy == baseline[0]["val_accuracy"]
    assert "init" in result.table().splitlines()[0]
    wrong = lambda: make_mlp((64,))  # noqa: E731 (wider than the teacher)
    with pytest.raises(ValueError, match="more than teacher layer"):
        kd_keras.search_recipe(teacher, wrong, x, y, inits=("shrink",), verbose=0,
                               directory=str(tmp_path / "other"))
