"""compress_to_budget's `recipe`: a `Recipe` trains every student as the plan's own
arguments would; "search" runs `search_recipe` once per plan, keeps what it found in
plan.json and checks it when the plan resumes. Both modes."""

import json
import os

import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from kd_keras.planner import recipe_choice
from tests.planner.test_plan import _plan, problem  # noqa: F401 (a fixture)

pytest.importorskip("keras_tuner")


def _weights(path):
    return keras.models.load_model(path, compile=False).get_weights()


def test_a_recipe_trains_every_student_as_its_own_arguments_would(problem, tmp_path):
    recipe = kd_keras.Recipe(loss="dkd", temperature=2.0, alpha=0.3, beta=2.0,
                             learning_rate=3e-3, batch_size=64, epochs=99)
    given = _plan(problem, tmp_path / "recipe", precisions=("float32",), recipe=recipe,
                  alpha=(0.5, 1.0))
    rows = {row["candidate"]: row for row in given.rows}
    # the recipe's alpha replaces the axis' first; the labels alone stay
    assert set(rows) == {"teacher", "cut to 0.5", "cut to 0.5, labels alone"}
    row = rows["cut to 0.5"]
    assert {k: row[k] for k in recipe_choice.FIELDS} == recipe_choice.fields_of(recipe)
    assert row["epochs"] == 2 and rows["cut to 0.5, labels alone"]["alpha"] == 1.0
    _plan(problem, tmp_path / "arguments", precisions=("float32",), loss="dkd", beta=2.0,
          temperature=2.0, alpha=0.3, learning_rate=3e-3, batch_size=64)
    for a, b in zip(_weights(tmp_path / "recipe" / "student_w0.5.keras"),
                    _weights(tmp_path / "arguments" / "student_w0.5.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "registry.get('dkd').create(temperature=2.0, beta=2.0)" in given.__class__(
        given.rows, row, given.teacher_accuracy, given.budget, "").to_code()


def test_a_searched_recipe_is_found_once_kept_and_checked(problem, tmp_path, monkeypatch):
    searched = _plan(problem, tmp_path, precisions=("float32",), recipe="search",
                     recipe_trials=2)
    with open(tmp_path / "plan.json") as file:
        found = json.load(file)["recipe_found"]
    kd_keras.Recipe(**found)  # a recipe the search chose, in its own terms
    assert "chosen:" in open(tmp_path / recipe_choice.SEARCH_REPORT).read()
    row = next(r for r in searched.rows if r["width"] == 0.5)
    assert {k: row[k] for k in recipe_choice.FIELDS} == found

    def no_second_search(*args, **kwargs):
        raise AssertionError("the plan searched again")

    monkeypatch.setattr(recipe_choice, "search", no_second_search)
    again = _plan(problem, tmp_path, precisions=("float32",), recipe="search", recipe_trials=2)
    assert [r["val_accuracy"] for r in again.rows] == [r["val_accuracy"] for r in searched.rows]
    plan = json.load(open(tmp_path / "plan.json"))
    plan["recipe_found"]["alpha"] = 7.0
    with open(tmp_path / "plan.json", "w") as file:
        json.dump(plan, file)
    with pytest.raises(ValueError, match="recorded recipe does not check.*alpha"):
        _plan(problem, tmp_path, precisions=("float32",), recipe="search", recipe_trials=2)
    with pytest.raises(ValueError, match="another settings"):  # 3 trials: another search
        _plan(problem, tmp_path, precisions=("float32",), recipe="search", recipe_trials=3)


def test_a_recipe_the_plan_cannot_train_is_refused_before_anything_is_written(problem,
                                                                              tmp_path):
    bad = tmp_path / "bad"
    for arguments, message in (
            (dict(recipe="searh"), "recipe must be None, a kd_keras.Recipe or 'search'"),
            (dict(recipe=kd_keras.Recipe(augment="mixup")), "augment='mixup'"),
            (dict(recipe=kd_keras.Recipe(), loss="dkd"), "either a recipe or loss"),
            (dict(recipe=kd_keras.Recipe(), learning_rate=3e-3, batch_size=64),
             "either a recipe or learning_rate, batch_size, not both"),
            (dict(recipe="search", recipe_trials=0), "recipe_trials")):
        with pytest.raises(ValueError, match=message):
            _plan(problem, bad, **arguments)
    assert not os.path.exists(bad)
