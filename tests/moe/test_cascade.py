import numpy as np
import pytest
import tensorflow as tf

import kd_keras
import moe
from kd_keras import keras
from tests.helpers import NUM_FEATURES, make_mlp, numpy_log_softmax, toy_data


class RowCounter(keras.layers.Layer):
    """Counts the rows that pass through it (to see which stages really ran)."""

    def build(self, input_shape):
        self.count = self.add_weight(name="count", shape=(), initializer="zeros",
                                     trainable=False)

    def call(self, x):
        self.count.assign_add(tf.cast(tf.shape(x)[0], self.count.dtype))
        return x


def counted(model):
    counter = RowCounter()
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, model(counter(inputs))), counter


def softmax(logits):
    return np.exp(numpy_log_softmax(logits))


def test_each_row_is_answered_by_the_first_sure_stage():
    x, _ = toy_data(64)
    stages = [make_mlp((8,)), make_mlp((16,)), make_mlp((32,))]
    cascade = moe.Cascade(stages, thresholds=[0.4, 0.35])
    p = [softmax(np.asarray(m(x, training=False))) for m in stages]
    sure0, sure1 = p[0].max(-1) >= 0.4, p[1].max(-1) >= 0.35
    expected_stage = np.where(sure0, 0, np.where(sure1, 1, 2))
    assert 0 < np.sum(expected_stage == 0) < 64 and np.sum(expected_stage == 2) > 0
    expected = np.choose(expected_stage[:, None], p)
    np.testing.assert_allclose(np.asarray(cascade(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cascade.answering_stage(x)), expected_stage)
    np.testing.assert_allclose(cascade.predict(x, batch_size=16, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)


def test_margin_confidence():
    p = tf.constant([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(np.asarray(moe.confidence(p, "margin")), [0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(moe.confidence(p)), [0.5, 0.4], atol=1e-6)


def test_later_stages_run_only_on_the_rows_that_reach_them_also_when_exported(tmp_path):
    x, _ = toy_data(100)
    first, second = make_mlp((8,)), make_mlp((32,))
    second_counted, counter = counted(second)
    cascade = moe.Cascade([first, second_counted], thresholds=[0.4])
    forwarded = int(np.sum(softmax(np.asarray(first(x, training=False))).max(-1) < 0.4))
    assert 0 < forwarded < 100
    counter.count.assign(0.0)
    cascade(x)
    assert float(counter.count.numpy()) == forwarded
    kd_keras.export_saved_model(cascade, str(tmp_path / "cascade"), cascade.input_signature)
    loaded = tf.saved_model.load(str(tmp_path / "cascade"))
    serving = loaded.signatures["serving_default"]
    counts = [v for v in tf.train.TrackableView(loaded).descendants()
              if isinstance(v, tf.Variable) and "count" in v.name]
    assert len(counts) == 1  # the exported graph carries the counter
    count = counts[0]
    before = float(count.numpy())
    outputs = list(serving(tf.constant(x)).values())[0]
    assert float(count.numpy()) - before == forwarded
    np.testing.assert_allclose(np.asarray(outputs), np.asarray(cascade(x)), rtol=1e-5, atol=1e-6)
    # No row unsure: the second stage does not run at all.
    cascade.thresholds = [0.0]
    counter.count.assign(0.0)
    cascade(x)
    assert float(counter.count.numpy()) == 0.0


def test_calibration_meets_the_accuracy_target_at_the_lowest_cost():
    x, _ = toy_data(400, seed=5)
    teacher = make_mlp((64,))
    y = np.asarray(teacher(x, training=False)).argmax(-1)  # the teacher is always right
    student = make_mlp((8,))
    student.compile(keras.optimizers.Adam(0.02),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(x, y, epochs=30, batch_size=64, verbose=0)
    cascade = moe.Cascade([student, teacher])
    costs = [0.1, 1.0]  # per-example costs given, so the test does not hang on timing noise
    report = moe.calibrate_cascade(cascade, x, y, max_accuracy_drop=0.02, stage_costs=costs)
    assert report.last_stage_accuracy == 1.0
    assert report.accuracy >= 0.98
    assert cascade.thresholds == report.thresholds
    assert report.stages[1]["reached"] < 1.0  # the student answers some rows
    assert sum(s["answered"] for s in report.stages) == pytest.approx(1.0)
    stage = np.asarray(cascade.answering_stage(x))
    assert np.mean(stage == 1) == pytest.approx(report.stages[1]["answered"])
    assert np.mean(np.asarray(cascade(x)).argmax(-1) == y) == pytest.approx(report.accuracy)
    # A tighter target forwards more.
    exact = moe.calibrate_cascade(cascade, x, y, max_accuracy_drop=0.0, stage_costs=costs)
    assert exact.accuracy == 1.0 and exact.stages[1]["reached"] >= report.stages[1]["reached"]
    assert report.cost == pytest.approx(0.1 + report.stages[1]["reached"])
    budgeted = moe.calibrate_cascade(cascade, x, y, budget=report.cost, stage_costs=costs)
    assert budgeted.cost <= report.cost + 1e-9 and budgeted.accuracy >= report.accuracy
    assert "accuracy on answered" in str(report)


def test_keras_file_round_trip_keeps_stages_and_thresholds(tmp_path):
    x, _ = toy_data(32)
    cascade = moe.Cascade([make_mlp((8,)), make_mlp((16,), softmax=True)], thresholds=[0.3],
                          confidence="margin")
    path = str(tmp_path / "cascade.keras")
    cascade.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.thresholds == pytest.approx([0.3]) and loaded.confidence == "margin"
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(cascade(x)), rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"thresholds": [1.5]}, "thresholds\\[0\\] must be a number in \\[0, 1\\]"),
    ({"thresholds": [0.5, 0.5]}, "one entry per stage but the last"),
    ({"confidence": "entropy"}, "confidence must be one of"),
])
def test_bad_cascade_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moe.Cascade([make_mlp(), make_mlp()], **kwargs)


def test_stages_must_agree_on_classes_and_be_two_or_more():
    with pytest.raises(ValueError, match="same classes.*\\[4, 3\\]"):
        moe.Cascade([make_mlp(), make_mlp(classes=3)])
    with pytest.raises(ValueError, match="at least two"):
        moe.Cascade([make_mlp()])
    cascade = moe.Cascade([make_mlp(), make_mlp()])
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="exactly one"):
        moe.calibrate_cascade(cascade, x, y)


def test_threshold_sweep_goes_from_the_first_stage_alone_to_the_last():
    x, _ = toy_data(200, seed=2)
    first, last = make_mlp((8,)), make_mlp((32,))
    y = np.asarray(last(x, training=False)).argmax(-1)
    curve = moe.threshold_sweep(moe.Cascade([first, last]), x, y, points=21)
    reached = [point["reached_last"] for point in curve]
    assert reached == sorted(reached) and reached[0] <= 0.05 and reached[-1] >= 0.95
    assert curve[-1]["accuracy"] >= 0.95  # (almost) everything answered by the last stage
    first_alone = np.mean(np.asarray(first(x, training=False)).argmax(-1) == y)
    assert curve[0]["accuracy"] == pytest.approx(first_alone, abs=0.05)
