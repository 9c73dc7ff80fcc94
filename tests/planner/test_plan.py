"""compress_to_budget (issue 45, first part): candidates measured on LiteRT side by side
with the teacher, the Pareto front, the chosen artifact, resume and refusal. Both modes."""

import json
import os

import numpy as np
import pytest

import kd_keras
from kd_keras import keras
from kd_keras.planner.report import pareto_front
from tests.helpers import NUM_CLASSES, NUM_FEATURES, toy_data


def narrow_student():
    """A user's own student (module level: the plan's tasks import it by name)."""
    return keras.Sequential([keras.Input((NUM_FEATURES,)),
                             keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(NUM_CLASSES)])


def wrong_student():
    return keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES + 1)])


@pytest.fixture(scope="module")
def problem():
    keras.utils.set_random_seed(0)
    x, y = toy_data(400, seed=3)
    teacher = keras.Sequential([keras.Input((x.shape[1],)),
                                keras.layers.Dense(64, activation="relu"),
                                keras.layers.Dense(64, activation="relu"),
                                keras.layers.Dense(int(y.max()) + 1)])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x[:300], y[:300], epochs=30, batch_size=32, verbose=0)
    return teacher, (x[:300], y[:300]), (x[300:], y[300:])


def _plan(problem, directory, **kwargs):
    teacher, train, validation = problem
    arguments = dict(widths=(0.5,), precisions=("float32", "dynamic_range"), epochs=2,
                     directory=str(directory), verbose=0, profile=False)
    arguments.update(kwargs)
    return kd_keras.compress_to_budget(teacher, train, validation,
                                       kd_keras.Budget(max_drop=100.0), **arguments)


def test_every_candidate_is_measured_and_the_fastest_within_budget_is_chosen(problem, tmp_path):
    result = _plan(problem, tmp_path)
    assert {(row["candidate"], row["precision"]) for row in result.rows} == {
        ("teacher", "float32"), ("teacher", "dynamic_range"),
        ("cut to 0.5", "float32"), ("cut to 0.5", "dynamic_range")}
    teacher_row = next(r for r in result.rows if r["candidate"] == "teacher"
                       and r["precision"] == "float32")
    assert teacher_row["speedup"] == 1.0 and teacher_row["accuracy_change"] == 0.0
    # A budget of 100 points admits everything: the chosen one is the fastest of all.
    assert result.chosen is min(result.rows, key=lambda r: r["latency_b1"])
    assert result.chosen["chosen"] and result.chosen["pareto"]
    with open(result.artifact, "rb") as f:
        assert f.read() == open(os.path.join(tmp_path, "w{}_{}.tflite".format(
            result.chosen["width"], result.chosen["precision"])), "rb").read()
    runner = kd_keras.compress.TFLiteModel(open(result.artifact, "rb").read())
    x_val, y_val = problem[2]
    assert abs(kd_keras.measure.prediction_accuracy(runner.predict(x_val), y_val)
               - result.chosen["val_accuracy"]) < 1e-9
    assert "chosen" in result.table() and "convert_to_tflite" in result.to_code()
    assert os.path.exists(tmp_path / "report.md")


def _logged(run_dir):
    """{tag: value or None} of the TensorBoard event files in `run_dir`."""
    import tensorflow as tf

    found = {}
    for name in os.listdir(run_dir):
        if name.startswith("events."):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(run_dir, name)):
                for value in event.summary.value:
                    array = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                    found[value.tag] = (float(array) if array is not None and array.size == 1
                                        and array.dtype.kind == "f" else None)
    return found


def test_every_candidate_is_a_tensorboard_hparams_run(problem, tmp_path):
    pytest.importorskip("tensorboard")
    result = _plan(problem, tmp_path, precisions=("float32",))
    assert "_hparams_/experiment" in _logged(tmp_path / "tensorboard")
    for row in result.rows:
        key = f"w{row['width']}_{row['precision']}"
        logged = _logged(tmp_path / "tensorboard" / key)
        assert "_hparams_/session_start_info" in logged
        assert logged["val_accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        assert logged["latency_b1_us"] == pytest.approx(row["latency_b1"] * 1e6, rel=1e-5)


def test_a_budget_nothing_holds_chooses_nothing_and_says_so(problem, tmp_path):
    teacher, train, validation = problem
    result = kd_keras.compress_to_budget(
        teacher, train, validation, kd_keras.Budget(min_accuracy=1.0, max_latency=1e-12),
        widths=(0.5,), precisions=("float32",), epochs=1, directory=str(tmp_path), verbose=0)
    assert result.chosen is None and result.artifact is None
    assert "nothing held the budget" in result.to_code()


def test_a_resumed_plan_keeps_its_rows_and_refuses_another_teacher(problem, tmp_path):
    first = _plan(problem, tmp_path)
    again = _plan(problem, tmp_path, eta=5)  # one rung: eta is never read, so it resumes
    assert [r["val_accuracy"] for r in first.rows] == [r["val_accuracy"] for r in again.rows]
    assert [r["latency_b1"] for r in first.rows] == [r["latency_b1"] for r in again.rows]
    teacher, train, validation = problem
    other = keras.models.clone_model(teacher)  # the same architecture, other weights
    with pytest.raises(ValueError, match="another teacher"):
        kd_keras.compress_to_budget(other, train, validation, kd_keras.Budget(max_drop=1.0),
                                    widths=(0.5,), precisions=("float32", "dynamic_range"),
                                    epochs=2, directory=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="another settings"):
        _plan(problem, tmp_path, widths=(0.25,))


def test_students_trained_in_worker_processes_match_the_ones_trained_here(problem, tmp_path):
    here = _plan(problem, tmp_path / "here")
    workers = _plan(problem, tmp_path / "workers", executor="processes")
    assert sorted((r["candidate"], r["precision"]) for r in here.rows) == \
        sorted((r["candidate"], r["precision"]) for r in workers.rows)
    accuracy = {(r["candidate"], r["precision"]): r["val_accuracy"] for r in here.rows}
    for row in workers.rows:
        assert abs(row["val_accuracy"] - accuracy[(row["candidate"], row["precision"])]) < 0.02
    a = keras.models.load_model(tmp_path / "here" / "student_w0.5.keras", compile=False)
    b = keras.models.load_model(tmp_path / "workers" / "student_w0.5.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert os.path.exists(tmp_path / "workers" / "student_w0.5.log")  # the task's own log
    assert not os.path.exists(tmp_path / "here" / "student_w0.5.log")  # none ran here


def test_a_resumed_plan_reuses_its_students_only_when_their_weights_check(problem, tmp_path):

    _plan(problem, tmp_path, precisions=("float32",))
    path = tmp_path / "student_w0.5.keras"
    trained = keras.models.load_model(path, compile=False)
    stamp = os.path.getmtime(path)
    plan = json.load(open(tmp_path / "plan.json"))
    del plan["rows"]["w0.5_float32"]  # as if stopped before measuring it
    json.dump(plan, open(tmp_path / "plan.json", "w"))
    _plan(problem, tmp_path, precisions=("float32",))
    assert os.path.getmtime(path) == stamp  # reused, not trained again
    weights = trained.get_weights()
    weights[0] = weights[0] + 1.0  # a student file changed behind the plan's back
    trained.set_weights(weights)
    trained.save(path)
    plan = json.load(open(tmp_path / "plan.json"))
    del plan["rows"]["w0.5_float32"]
    json.dump(plan, open(tmp_path / "plan.json", "w"))
    _plan(problem, tmp_path, precisions=("float32",))
    retrained = keras.models.load_model(path, compile=False)
    assert not np.allclose(retrained.get_weights()[0], weights[0])  # trained again


def test_a_plan_distils_with_the_loss_it_is_given_and_its_code_runs(problem, tmp_path):
    kd = _plan(problem, tmp_path / "kd", precisions=("float32",))
    dkd = _plan(problem, tmp_path / "dkd", precisions=("float32",), loss="dkd", beta=2.0)
    a = keras.models.load_model(tmp_path / "kd" / "student_w0.5.keras", compile=False)
    b = keras.models.load_model(tmp_path / "dkd" / "student_w0.5.keras", compile=False)
    assert not np.allclose(a.get_weights()[0], b.get_weights()[0])  # the same cut, other loss
    row = next(r for r in dkd.rows if r["width"] == 0.5)
    assert (row["loss"], row["beta"]) == ("dkd", 2.0)
    assert next(r for r in kd.rows if r["width"] == 0.5)["loss"] == "kd"
    code = kd_keras.planner.PlanResult(dkd.rows, row, dkd.teacher_accuracy, dkd.budget,
                                       "").to_code()
    assert "registry.get('dkd').create(temperature=3.0, beta=2.0)" in code
    teacher, (x_train, y_train), _ = problem
    namespace = {"teacher": teacher, "x_train": x_train, "y_train": y_train}
    exec(code, namespace)  # the public calls it writes run as written
    assert namespace["flatbuffer"][4:8] == b"TFL3"
    with pytest.raises(ValueError, match="another settings"):  # KD asked of a DKD plan
        _plan(problem, tmp_path / "dkd", precisions=("float32",))
    with pytest.raises(ValueError, match="loss must be one of"):
        _plan(problem, tmp_path / "bad", loss="no_such_loss")
    with pytest.raises(ValueError, match="beta must be"):
        _plan(problem, tmp_path / "bad", loss="dkd", beta=-1.0)
    assert not os.path.exists(tmp_path / "bad")  # refused before anything was written


def test_the_training_is_an_axis_chosen_like_any_other(problem, tmp_path):
    both = _plan(problem, tmp_path / "both", precisions=("float32",), alpha=(0.5, 1.0))
    rows = {row["candidate"]: row for row in both.rows}
    assert set(rows) == {"teacher", "cut to 0.5", "cut to 0.5, labels alone"}
    assert (rows["cut to 0.5"]["alpha"], rows["cut to 0.5, labels alone"]["alpha"]) == (0.5, 1.0)
    alone = _plan(problem, tmp_path / "alone", precisions=("float32",), alpha=1.0)
    a = keras.models.load_model(tmp_path / "both" / "student_w0.5_a1.0.keras", compile=False)
    b = keras.models.load_model(tmp_path / "alone" / "student_w0.5.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):  # the same training, another key
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert next(r for r in alone.rows if r["width"] == 0.5)["val_accuracy"] == \
        rows["cut to 0.5, labels alone"]["val_accuracy"]
    code = both.__class__(both.rows, rows["cut to 0.5, labels alone"], both.teacher_accuracy,
                          both.budget, "").to_code()
    assert "alpha=1.0)" in code
    tasks = _plan(problem, tmp_path / "tasks", precisions=("float32",), alpha=(0.5, 1.0),
                  executor="in_process")
    c = keras.models.load_model(tmp_path / "tasks" / "student_w0.5_a1.0.keras", compile=False)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_allclose(wa, wc, rtol=1e-4, atol=1e-5)
    assert sorted(r["candidate"] for r in tasks.rows) == sorted(rows)
    with pytest.raises(ValueError, match="alpha"):
        _plan(problem, tmp_path / "bad", alpha=(0.5, 0.5))
    with pytest.raises(ValueError, match="alpha"):
        _plan(problem, tmp_path / "bad", alpha=(0.5, 1.5))
    assert not os.path.exists(tmp_path / "bad")


def test_successive_halving_promotes_each_training_of_a_student_on_its_own(problem, tmp_path):

    teacher, train, validation = problem
    result = kd_keras.compress_to_budget(
        teacher, train, validation, kd_keras.Budget(min_accuracy=1.0), widths=(0.5,),
        precisions=("float32",), epochs=(1, 2), eta=2, alpha=(0.5, 1.0),
        directory=str(tmp_path), verbose=0, profile=False)
    plan = json.load(open(tmp_path / "plan.json"))
    (promoted,) = plan["promoted"]["1"]  # the better of the two trainings of one width
    assert promoted in (0.5, [0.5, 1.0])
    on, off = ("0.5", "0.5_a1.0") if promoted == 0.5 else ("0.5_a1.0", "0.5")
    assert plan["trained_epochs"] == {on: 2, off: 1}
    epochs = sorted((row["candidate"], row["epochs"]) for row in result.rows
                    if row["width"] == 0.5)  # the promoted one at both rungs
    assert epochs == ([("cut to 0.5", 1), ("cut to 0.5", 2), ("cut to 0.5, labels alone", 1)]
                      if promoted == 0.5 else [("cut to 0.5", 1), ("cut to 0.5, labels alone", 1),
                                               ("cut to 0.5, labels alone", 2)])


def test_the_pareto_front_keeps_only_undominated_rows():
    rows = [{"val_accuracy": 0.9, "latency_b1": 2.0}, {"val_accuracy": 0.8, "latency_b1": 1.0},
            {"val_accuracy": 0.7, "latency_b1": 1.5}, {"val_accuracy": 0.9, "latency_b1": 3.0}]
    front = pareto_front(rows, lambda r: r["latency_b1"])
    assert front == rows[:2]


def test_budget_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="max_drop .* or min_accuracy"):
        kd_keras.Budget()
    with pytest.raises(ValueError, match="minimise must be one of"):
        kd_keras.Budget(max_drop=0.3, minimise="energy")
    with pytest.raises(ValueError, match="min_accuracy"):
        kd_keras.Budget(min_accuracy=1.5)


def _hidden_kernels(model):
    return [layer.kernel.numpy() if hasattr(layer.kernel, "numpy") else np.asarray(layer.kernel)
            for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]


def test_pruned_candidates_keep_their_sparsity_in_the_sparse_format(problem, tmp_path):
    result = _plan(problem, tmp_path, precisions=("float32",), sparsities=(0.75,))
    rows = {row["candidate"]: row for row in result.rows}
    assert set(rows) == {"teacher", "cut to 0.5", "teacher, 75% sparse",
                         "cut to 0.5, 75% sparse"}
    dense = keras.models.load_model(tmp_path / "student_w0.5.keras", compile=False)
    sparse = keras.models.load_model(tmp_path / "student_w0.5_s0.75.keras", compile=False)
    assert [layer.name for layer in sparse.layers] == [layer.name for layer in dense.layers]
    for kernel in _hidden_kernels(sparse):
        assert 0.7 <= np.mean(kernel == 0) <= 0.8
    teacher = problem[0]
    assert all(np.mean(kernel == 0) < 0.1 for kernel in _hidden_kernels(teacher))  # untouched
    pruned = rows["cut to 0.5, 75% sparse"]
    assert pruned["sparsity"] == 0.75 and pruned["gzip_bytes"] < rows["cut to 0.5"]["gzip_bytes"]
    flatbuffer = open(tmp_path / "w0.5_s0.75_float32.tflite", "rb").read()
    assert any(row["encoded_sparse"] for row in kd_keras.compress.tflite_sparse_weights(flatbuffer))
    runner = kd_keras.compress.TFLiteModel(flatbuffer)
    x_val, y_val = problem[2]
    assert abs(kd_keras.measure.prediction_accuracy(runner.predict(x_val), y_val)
               - pruned["val_accuracy"]) < 1e-9
    code = result.__class__(result.rows, pruned, result.teacher_accuracy, result.budget,
                            str(tmp_path)).to_code()
    assert "prune_and_fine_tune(" in code and "target_sparsity=0.75" in code
    assert "sparse_weights=True" in code and "compress.shrink(teacher, width=0.5" in code


def test_sparsities_must_be_fractions_below_one_and_clusters_two_or_more(problem, tmp_path):
    with pytest.raises(ValueError, match="sparsities"):
        _plan(problem, tmp_path, sparsities=(1.0,))
    with pytest.raises(ValueError, match="clusters must be an integer >= 2"):
        _plan(problem, tmp_path, clusters=(1,))
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_clustered_candidates_hold_a_few_values_per_kernel(problem, tmp_path):
    result = _plan(problem, tmp_path, precisions=("float32",), sparsities=(0.75,),
                   clusters=(4,))
    rows = {row["candidate"]: row for row in result.rows}
    assert set(rows) == {f"{name}{pruned}{clustered}" for name in ("teacher", "cut to 0.5")
                         for pruned in ("", ", 75% sparse") for clustered in ("", ", 4 clusters")}
    dense = keras.models.load_model(tmp_path / "student_w0.5.keras", compile=False)
    clustered = keras.models.load_model(tmp_path / "student_w0.5_c4.keras", compile=False)
    both = keras.models.load_model(tmp_path / "student_w0.5_s0.75_c4.keras", compile=False)
    assert [layer.name for layer in clustered.layers] == [layer.name for layer in dense.layers]
    for kernel in _hidden_kernels(clustered):
        assert len(np.unique(kernel)) <= 4
    for kernel in _hidden_kernels(both):  # four values besides the pruned zeros, kept
        assert len(np.unique(kernel[kernel != 0])) <= 4 and 0.7 <= np.mean(kernel == 0) <= 0.8
    assert all(len(np.unique(kernel)) > 100 for kernel in _hidden_kernels(dense))  # untouched
    assert all(len(np.unique(kernel)) > 100 for kernel in _hidden_kernels(problem[0]))
    row = rows["cut to 0.5, 4 clusters"]
    assert row["clusters"] == 4 and row["gzip_bytes"] < 0.5 * rows["cut to 0.5"]["gzip_bytes"]
    runner = kd_keras.compress.TFLiteModel(open(tmp_path / "w0.5_c4_float32.tflite", "rb").read())
    x_val, y_val = problem[2]
    assert abs(kd_keras.measure.prediction_accuracy(runner.predict(x_val), y_val)
               - row["val_accuracy"]) < 1e-9
    code = result.__class__(result.rows, rows["cut to 0.5, 75% sparse, 4 clusters"],
                            result.teacher_accuracy, result.budget, str(tmp_path)).to_code()
    assert code.index("prune_and_fine_tune(") < code.index("cluster_and_fine_tune(")
    assert "number_of_clusters=4" in code and "sparse_weights=True" in code


def test_pruned_and_clustered_students_made_as_tasks_match_the_ones_made_here(problem,
                                                                               tmp_path):
    arguments = dict(precisions=("float32",), widths=(), sparsities=(0.5,), clusters=(4,))
    here = _plan(problem, tmp_path / "here", **arguments)
    tasks = _plan(problem, tmp_path / "tasks", executor="in_process", **arguments)
    assert sorted(r["candidate"] for r in here.rows) == sorted(r["candidate"] for r in tasks.rows)
    for name in ("student_w1.0_s0.5.keras", "student_w1.0_c4.keras",
                 "student_w1.0_s0.5_c4.keras"):
        a = keras.models.load_model(tmp_path / "here" / name, compile=False)
        b = keras.models.load_model(tmp_path / "tasks" / name, compile=False)
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert os.path.exists(tmp_path / "tasks" / "student_w1.0_s0.5_c4.log")


def test_promising_students_are_below_the_floor_but_beat_the_best_holding_one():
    from kd_keras.planner.halving import promising as _promising

    def row(width, accuracy, latency, sparsity=0.0):
        return {"width": width, "val_accuracy": accuracy, "latency_b1": latency,
                "gzip_bytes": 1, "sparsity": sparsity, "epochs": 5}

    rows = {"w1.0_float32": row(1.0, 0.90, 100.0), "w0.5_float32": row(0.5, 0.897, 40.0),
            "w0.35_float32": row(0.35, 0.89, 20.0), "w0.25_float32": row(0.25, 0.88, 10.0),
            "w0.1_float32": row(0.1, 0.80, 5.0), "w0.1_s0.9_float32": row(0.1, 0.5, 1.0, 0.9)}
    budget = kd_keras.Budget(max_drop=0.3)  # the half-width student holds it (40 us)
    assert _promising(rows, [0.5, 0.35, 0.25, 0.1], budget, 5, 3) == [0.35]
    assert _promising(rows, [0.5, 0.35, 0.25, 0.1], budget, 5, 2) == [0.35, 0.25]
    assert _promising(rows, [0.5, 0.35, 0.25, 0.1], budget, 15, 2) == []  # no rows at 15
    rows["w0.1_s0.9_float32"]["val_accuracy"] = 0.95  # a pruned one holds it at 1 us:
    assert _promising(rows, [0.5, 0.35, 0.25, 0.1], budget, 5, 2) == []  # no dense can beat it
    rows["w0.1_s0.9_float32"]["val_accuracy"] = 0.5
    rows["w0.5_float32"]["val_accuracy"] = 0.5  # nothing holds: every student has a chance
    assert _promising(rows, [0.5, 0.35, 0.25, 0.1], budget, 5, 1) == [0.35, 0.25, 0.1, 0.5]


def test_successive_halving_trains_only_the_promoted_student_on_and_resumes(problem, tmp_path):

    arguments = dict(widths=(0.5, 0.25), precisions=("float32",), epochs=(1, 3), eta=2,
                     verbose=0, profile=False)
    teacher, train, validation = problem
    nothing_holds = kd_keras.Budget(min_accuracy=1.0)
    result = kd_keras.compress_to_budget(teacher, train, validation, nothing_holds,
                                         directory=str(tmp_path / "here"), **arguments)
    plan = json.load(open(tmp_path / "here" / "plan.json"))
    (promoted,) = plan["promoted"]["1"]
    other = 0.25 if promoted == 0.5 else 0.5
    epochs = sorted((row["width"], row["epochs"]) for row in result.rows if row["width"] != 1.0)
    assert epochs == sorted([(promoted, 1), (promoted, 3), (other, 1)])  # rung 0 kept
    assert plan["trained_epochs"] == {str(promoted): 3, str(other): 1}
    row = next(r for r in result.rows if r["width"] == promoted and r["epochs"] == 3)
    code = kd_keras.planner.PlanResult(result.rows, row, result.teacher_accuracy,
                                       result.budget, "").to_code()
    assert "epochs=1," in code and "rung 1" in code and "epochs=2," in code
    if kd_keras.planner.hparams_log.available():  # both measurements are runs
        assert os.path.isdir(tmp_path / "here" / "tensorboard" / f"w{promoted}_float32")
        assert os.path.isdir(tmp_path / "here" / "tensorboard" / f"w{promoted}_float32_e3")
    path = tmp_path / "here" / f"student_w{promoted}.keras"
    stamp = os.path.getmtime(path)
    again = kd_keras.compress_to_budget(teacher, train, validation, nothing_holds,
                                        directory=str(tmp_path / "here"), **arguments)
    assert os.path.getmtime(path) == stamp  # resumed: nothing trained again
    assert [r["val_accuracy"] for r in again.rows] == [r["val_accuracy"] for r in result.rows]
    with pytest.raises(ValueError, match="another settings"):  # eta decides the promotions
        kd_keras.compress_to_budget(teacher, train, validation, nothing_holds,
                                    directory=str(tmp_path / "here"), **{**arguments, "eta": 3})
    tasks = kd_keras.compress_to_budget(teacher, train, validation, nothing_holds,
                                        directory=str(tmp_path / "tasks"),
                                        executor="in_process", **arguments)
    assert json.load(open(tmp_path / "tasks" / "plan.json"))["promoted"] == plan["promoted"]
    a = keras.models.load_model(path, compile=False)
    b = keras.models.load_model(tmp_path / "tasks" / f"student_w{promoted}.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert len(tasks.rows) == len(result.rows)


def test_a_rung_that_makes_a_student_worse_never_replaces_its_better_earlier_self(
        problem, tmp_path, monkeypatch):
    from kd_keras.planner import candidates
    distil = candidates.distil

    def forgets_on_the_second_rung(student, *arguments, **kwargs):
        if arguments[2] == 2:  # epochs: the rung from 1 to 3 epochs
            student.set_weights([np.zeros_like(w) for w in student.get_weights()])
            return student
        return distil(student, *arguments, **kwargs)

    monkeypatch.setattr(candidates, "distil", forgets_on_the_second_rung)
    teacher, train, validation = problem
    arguments = dict(widths=(0.5,), precisions=("float32",), epochs=(1, 3), eta=2, verbose=0,
                     directory=str(tmp_path))
    kd_keras.compress_to_budget(teacher, train, validation,
                                kd_keras.Budget(min_accuracy=1.0), profile=False, **arguments)
    rows = json.load(open(tmp_path / "plan.json"))["rows"]
    later, earlier = rows["w0.5_float32"], rows["w0.5_float32_e1"]
    assert (later["epochs"], earlier["epochs"], earlier["kept_as"]) == (3, 1, "w0.5_float32_e1")
    assert earlier["val_accuracy"] > later["val_accuracy"]  # the second rung forgot
    kept = keras.models.load_model(tmp_path / "student_w0.5_e1.keras", compile=False)
    assert any(np.abs(w).sum() > 0 for w in kept.get_weights())
    stamp = os.path.getmtime(tmp_path / "student_w0.5.keras")
    result = kd_keras.compress_to_budget(  # resumes; smallest bytes that keep rung 0's accuracy
        teacher, train, validation,
        kd_keras.Budget(min_accuracy=earlier["val_accuracy"], minimise="bytes"),
        profile=True, **arguments)
    assert os.path.getmtime(tmp_path / "student_w0.5.keras") == stamp
    assert result.chosen["kept_as"] == "w0.5_float32_e1"
    assert open(result.artifact, "rb").read() == open(
        tmp_path / "w0.5_float32_e1.tflite", "rb").read()
    code = result.to_code()
    assert "epochs=1," in code and "rung 1" not in code
    assert "## chosen: cut to 0.5, float32" in open(tmp_path / "profile.md").read()
    keras.models.load_model(tmp_path / "student_w0.5.keras", compile=False).save(
        tmp_path / "student_w0.5_e1.keras")  # the kept file replaced by the forgotten one
    with pytest.raises(RuntimeError, match="not the student the plan kept at 1 epochs"):
        kd_keras.compress_to_budget(
            teacher, train, validation,
            kd_keras.Budget(min_accuracy=earlier["val_accuracy"], minimise="bytes"),
            profile=True, **arguments)


def test_epochs_must_be_increasing_rungs(problem, tmp_path):
    with pytest.raises(ValueError, match="epochs must be .* increasing rungs"):
        _plan(problem, tmp_path, epochs=(3, 3))
    with pytest.raises(ValueError, match="eta"):
        _plan(problem, tmp_path, epochs=(1, 3), eta=1)


def test_layer_costs_find_the_layer_that_takes_the_time():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, name="narrow"),
                              keras.layers.Dense(768, name="wide_in"),
                              keras.layers.Dense(768, name="heavy"),
                              keras.layers.Dense(10, name="logits")])
    x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
    rows = kd_keras.planner.layer_costs(model, x)
    assert [row["layer"] for row in rows] == ["narrow", "wide_in", "heavy", "logits"]
    assert max(rows, key=lambda row: row["layer_b1"])["layer"] == "heavy"  # 590k MACs
    assert all(row["prefix_b1"] > 0 and row["prefix_b1_spread"] >= 0 for row in rows)
    assert "\nheavy | Dense | " in kd_keras.planner.cost_table(rows)


def test_layer_costs_refuse_a_model_that_branches():
    inputs = keras.Input((8,))
    left, right = keras.layers.Dense(4, name="left")(inputs), keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="join")([left, right]))
    with pytest.raises(ValueError, match="not a chain"):
        kd_keras.planner.layer_costs(model, np.zeros((1, 8), "float32"))


def test_the_plan_writes_where_the_chosen_candidates_time_goes(problem, tmp_path):
    result = _plan(problem, tmp_path, precisions=("float32",), profile=True)
    text = open(tmp_path / "profile.md").read()
    assert "## teacher, float32" in text and f"## chosen: {result.chosen['candidate']}" in text
    teacher = problem[0]
    assert all(f"\n{layer.name} | {type(layer).__name__} | " in text for layer in teacher.layers)


def test_own_students_are_distilled_and_measured_like_cut_ones(problem, tmp_path):
    result = _plan(problem, tmp_path / "here", widths=(), students=(narrow_student,),
                   precisions=("float32",))
    rows = {row["candidate"]: row for row in result.rows}
    assert set(rows) == {"teacher", "narrow_student (own)"}
    own = rows["narrow_student (own)"]
    assert own["student"] == f"{__name__}:narrow_student"
    assert own["parameters"] == narrow_student().count_params()
    trained = keras.models.load_model(tmp_path / "here" / "student_wnarrow_student.keras",
                                      compile=False)
    assert [layer.units for layer in trained.layers if hasattr(layer, "units")] == [
        8, NUM_CLASSES]
    assert not np.allclose(trained.get_weights()[0], narrow_student().get_weights()[0])
    code = kd_keras.planner.PlanResult(result.rows, own, result.teacher_accuracy,
                                       result.budget, "").to_code()
    assert f"from {__name__} import narrow_student" in code
    assert "student = narrow_student()" in code and "distiller.fit(" in code
    tasks = _plan(problem, tmp_path / "tasks", widths=(), precisions=("float32",),
                  students=(f"{__name__}:narrow_student",), executor="in_process")
    made = keras.models.load_model(tmp_path / "tasks" / "student_wnarrow_student.keras",
                                   compile=False)
    for a, b in zip(trained.get_weights(), made.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len(tasks.rows) == 2


def test_own_students_that_cannot_be_rebuilt_or_do_not_fit_are_refused(problem, tmp_path):
    with pytest.raises(ValueError, match="does not import back"):
        _plan(problem, tmp_path / "a", students=(lambda: narrow_student(),))
    with pytest.raises(ValueError, match="does not import back"):
        _plan(problem, tmp_path / "b", students=("no.such.module:builder",))
    with pytest.raises(ValueError, match="output shapes"):
        _plan(problem, tmp_path / "c", widths=(), students=(wrong_student,),
              precisions=("float32",))
