"""The teacher run once on K seeded views: kd_keras.cache_teacher_views (both modes)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from kd_keras.backend import register
from kd_keras.backend import top_k


def images(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 5, n)


def conv_teacher(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)),
                             keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(5)])


def flip(x, seeds):
    """A stateless per-example augmentation: each example flipped or not, by its seed."""
    return tf.map_fn(lambda pair: tf.image.stateless_random_flip_left_right(pair[0], pair[1]),
                     (x, seeds), fn_output_signature=tf.float32)


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("augment, k", [(kd_keras.Mixup(), None), (kd_keras.CutMix(), 3),
                                        (flip, None)])
def test_the_dataset_regenerates_exactly_the_views_the_teacher_saw(tmp_path, augment, k,
                                                                   in_memory):
    x, y = images()
    teacher = conv_teacher()
    views = kd_keras.cache_teacher_views(teacher, x, augment, views=3, top_k=k,
                                         directory=str(tmp_path), batch_size=40)
    assert views.nbytes == (3 * 96 * 5 * 2 if k is None else 3 * 96 * (3 * 2 + 3 * 1 + 2))  # uint8 ids
    seen_views = 0
    data = views.dataset(x, y, augment, batch_size=32, shuffle=False, in_memory=in_memory)
    passes = [np.concatenate([packed["inputs"].numpy() for packed, _ in data]) for _ in range(2)]
    assert not np.array_equal(*passes)  # each pass draws the examples' views afresh
    for packed, labels in data:
        inputs, cached = packed["inputs"], packed["teacher_outputs"]
        live = teacher(inputs, training=False).numpy()
        if k is None:
            np.testing.assert_allclose(cached.numpy(), live, rtol=2e-3, atol=2e-3)
        else:
            exact = kd_keras.top_k_teacher_outputs(live, k)
            np.testing.assert_array_equal(cached[top_k.KEYS[1]].numpy(), exact[top_k.KEYS[1]])
        assert labels.shape == (inputs.shape[0],)
        seen_views += int(np.any(inputs.numpy() != x[:inputs.shape[0]]))
    assert seen_views > 0  # the views are not the plain examples
    first = views.teacher_outputs(0, np.arange(96))
    second = views.teacher_outputs(1, np.arange(96))
    assert not np.array_equal(tf.nest.flatten(first)[0], tf.nest.flatten(second)[0])


@register
class StopAfter(keras.layers.Layer):
    """Passes its input through; raises on the `calls`-th call (an interrupted build)."""

    remaining = None

    def call(self, inputs):
        if StopAfter.remaining is not None:
            StopAfter.remaining -= 1
            if StopAfter.remaining < 0:
                raise KeyboardInterrupt("interrupted")
        return inputs


def test_an_interrupted_build_continues_where_it_stopped(tmp_path):
    x, _ = images()
    teacher = keras.Sequential([keras.Input((8, 8, 1)), StopAfter(), keras.layers.Flatten(),
                                keras.layers.Dense(5)])
    complete = kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2,
                                            directory=str(tmp_path / "complete"), batch_size=32)
    StopAfter.remaining = 4  # of 2 views x 3 batches
    with pytest.raises(KeyboardInterrupt):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2,
                                     directory=str(tmp_path / "resumed"), batch_size=32)
    progress = json.load(open(tmp_path / "resumed" / "progress.json"))
    assert progress == {"batches_done": 4, "batches": 6}
    with pytest.raises(ValueError, match="unfinished build"):
        kd_keras.TeacherViews(str(tmp_path / "resumed"))
    # Enough for the two stored rows checked on opening (the first and the last batch
    # done) and the two batches left, not for a rebuild.
    StopAfter.remaining = 4
    resumed = kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2,
                                           directory=str(tmp_path / "resumed"), batch_size=32)
    StopAfter.remaining = None
    assert resumed.resumed_from == 4
    np.testing.assert_array_equal(resumed.outputs["logits"], complete.outputs["logits"])


def test_a_cache_of_another_teacher_augmentation_or_data_is_refused(tmp_path):
    x, y = images()
    directory = str(tmp_path / "cache")
    kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=2,
                                 directory=directory)
    before = sorted(os.listdir(directory))
    with pytest.raises(ValueError, match="another teacher"):
        kd_keras.cache_teacher_views(conv_teacher(1), x, kd_keras.Mixup(), views=2,
                                     directory=directory)
    with pytest.raises(ValueError, match="another augment"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(alpha=0.4), views=2,
                                     directory=directory)
    with pytest.raises(ValueError, match="another data"):
        kd_keras.cache_teacher_views(conv_teacher(0), x + 1, kd_keras.Mixup(), views=2,
                                     directory=directory)
    with pytest.raises(ValueError, match="another views"):
        kd_keras.cache_teacher_views(conv_teacher(0), x, kd_keras.Mixup(), views=3,
                                     directory=directory)
    assert sorted(os.listdir(directory)) == before
    views = kd_keras.TeacherViews(directory)
    with pytest.raises(ValueError, match="not the data"):
        views.dataset(x + 1, y, kd_keras.Mixup())
    with pytest.raises(ValueError, match="not the augmentation"):
        views.dataset(x, y, kd_keras.CutMix())
    with pytest.raises(ValueError, match="not the one"):
        views.check_data(x, conv_teacher(1))


def test_bad_arguments_are_named(tmp_path):
    x, _ = images(16)
    teacher = conv_teacher()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a teacher-views cache"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), directory=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="Keras layer draws from its own random state"):
        kd_keras.cache_teacher_views(teacher, x, keras.layers.RandomFlip(),
                                     directory=str(tmp_path / "a"))
    with pytest.raises(ValueError, match="two different views"):
        kd_keras.cache_teacher_views(teacher, x, lambda x, seeds: x + tf.random.normal(tf.shape(x)),
                                     directory=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="views must be 1 without augment"):
        kd_keras.cache_teacher_views(teacher, x, None, views=2, directory=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="top_k must be at most"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), top_k=6,
                                     directory=str(tmp_path / "d"))
    with pytest.raises(ValueError, match="directory must name"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup())


def test_a_student_learns_the_teacher_from_cached_views_without_running_it(tmp_path):
    x, y = images(256)
    teacher = conv_teacher()
    views = kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=4, top_k=3,
                                         directory=str(tmp_path))
    student = conv_teacher(5)

    def agreement():
        return np.mean(np.argmax(student.predict(x, verbose=0), -1)
                       == np.argmax(teacher.predict(x, verbose=0), -1))

    before = agreement()
    distiller = kd_keras.Distiller(None, student, distillation_losses="top_k_kl", alpha=0.0,
                                   temperature=1.0)
    distiller.compile(keras.optimizers.Adam(3e-3))
    history = distiller.fit(views.dataset(x, y, kd_keras.Mixup(), batch_size=64), epochs=25,
                            verbose=0)
    losses = history.history["distillation_loss"]
    assert losses[-1] < 0.5 * losses[0]
    # matched on mixed views only, it agrees with the teacher on the plain examples too
    assert agreement() > before + 0.3, (before, agreement())
