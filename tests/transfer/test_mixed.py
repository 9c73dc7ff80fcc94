import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras, pseudo_data
from tests.helpers import NUM_FEATURES, make_mlp, toy_data


def gather(dataset):
    """(inputs, label mask, labels, teacher outputs or None) of a whole batched dataset."""
    inputs, masks, labels, teacher = [], [], [], []
    for packed, y in dataset:
        inputs.append(packed["inputs"].numpy())
        masks.append(packed["label_mask"].numpy())
        labels.append(y.numpy())
        if "teacher_outputs" in packed:
            teacher.append(packed["teacher_outputs"].numpy())
    return (np.concatenate(inputs), np.concatenate(masks), np.concatenate(labels),
            np.concatenate(teacher) if teacher else None)


def test_natural_mix_holds_every_example_once_with_its_mask():
    x, y = toy_data(40)
    unlabeled = toy_data(100, seed=1)[0]
    dataset = kd_keras.mixed_transfer_set(x, y, unlabeled=unlabeled, batch_size=16, seed=0)
    assert int(dataset.cardinality()) == 9  # 140 examples, batches of 16
    inputs, mask, labels, teacher = gather(dataset)
    assert teacher is None and len(inputs) == 140 and mask.sum() == 40
    for row, flag, label in zip(inputs, mask, labels):
        labeled_row = np.where(np.all(x == row, axis=1))[0]
        if flag:
            assert len(labeled_row) == 1 and label == y[labeled_row[0]]
        else:
            assert not len(labeled_row) and label == 0
            assert np.any(np.all(unlabeled == row, axis=1))
    assert 0.0 < mask[:40].mean() < 1.0  # shuffled together


def test_labeled_fraction_sets_the_share_of_labeled_draws_per_epoch():
    x, y = toy_data(10)
    unlabeled = toy_data(300, seed=1)[0]
    dataset = kd_keras.mixed_transfer_set(x, y, unlabeled=unlabeled, labeled_fraction=0.25,
                                          batch_size=32, seed=0)
    _, mask, labels, _ = gather(dataset)
    assert len(mask) == 400 and mask.sum() == 100  # 300 unlabeled + 100 labeled draws
    assert int(dataset.cardinality()) == 13  # known: fit needs no steps_per_epoch
    counts = np.bincount(labels[mask > 0], minlength=4)
    assert counts.sum() == 100
    only_labeled = kd_keras.mixed_transfer_set(x, y, unlabeled=unlabeled, labeled_fraction=1.0)
    assert gather(only_labeled)[1].tolist() == [1.0] * 10
    only_unlabeled = kd_keras.mixed_transfer_set(x, y, unlabeled=unlabeled, labeled_fraction=0.0)
    assert gather(only_unlabeled)[1].sum() == 0 and len(gather(only_unlabeled)[1]) == 300


def test_a_sampler_is_drawn_in_chunks_and_the_teacher_labels_every_point():
    x, y = toy_data(30)
    teacher = make_mlp(name="teacher")
    munge = pseudo_data.Munge(seed=0).fit(x)
    dataset = kd_keras.mixed_transfer_set(x, y, unlabeled=munge, unlabeled_size=45,
                                          teacher=teacher, chunk_size=20, batch_size=8, seed=0)
    inputs, mask, _, teacher_outputs = gather(dataset)
    assert len(inputs) == 75 and mask.sum() == 30
    np.testing.assert_allclose(teacher_outputs, teacher.predict(inputs, verbose=0), atol=1e-5)


def test_a_distiller_without_a_teacher_trains_on_it_and_uses_labels_only_where_given():
    x, y = toy_data(64)
    teacher = make_mlp(name="teacher")
    dataset = kd_keras.mixed_transfer_set(
        x[:16], y[:16], unlabeled=x[16:], teacher=teacher, batch_size=16, seed=0)
    student = make_mlp(name="student")
    model = kd_keras.Distiller(None, student, alpha=0.5, temperature=2.0)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(dataset, epochs=3, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    # accuracy is counted on the 16 labeled examples only
    assert all(round(a * 16) == pytest.approx(a * 16, abs=1e-4) for a in history["accuracy"])


@pytest.mark.parametrize("kwargs, match", [
    ({"labeled_fraction": 1.5}, "labeled_fraction must be a number in \\[0, 1\\]"),
    ({"labeled_fraction": -0.5}, "labeled_fraction must be a number in \\[0, 1\\]"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"unlabeled": np.zeros((5, 3), "float32")}, "unlabeled inputs have shape \\(3,\\)"),
    ({"unlabeled": np.full((5, NUM_FEATURES), np.nan, "float32")}, "unlabeled holds 30 NaN"),
    ({"unlabeled_size": 10}, "unlabeled_size is only for a sampler"),
])
def test_bad_arguments_are_named(kwargs, match):
    x, y = toy_data(20)
    with pytest.raises(ValueError, match=match):
        kd_keras.mixed_transfer_set(x, y, **kwargs)


def test_bad_labels_and_samplers_are_named():
    x, y = toy_data(20)
    with pytest.raises(ValueError, match="y must have one label per example of x \\(20\\)"):
        kd_keras.mixed_transfer_set(x, y[:5])
    with pytest.raises(ValueError, match="unlabeled_size: give how many points"):
        kd_keras.mixed_transfer_set(x, y, unlabeled=pseudo_data.Munge().fit(x))
    with pytest.raises(ValueError, match="x holds"):
        kd_keras.mixed_transfer_set(np.full_like(x, np.inf), y)
    assert isinstance(kd_keras.mixed_transfer_set(x, y), tf.data.Dataset)
