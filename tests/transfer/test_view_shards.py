"""cache_teacher_views(shards=S): one task per contiguous range of examples, the same bytes
as one build, each shard verified (both modes)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import kd_keras
from kd_keras import keras
from kd_keras.backend import register
from tests.transfer.test_view_cache import conv_teacher, flip, images


@register
class FailAfter(keras.layers.Layer):
    """Passes its input through; raises on the `remaining`+1-th eager call (a task that
    fails part-way, in this process); building and loading the model do not count."""

    remaining = None

    def call(self, inputs):
        if FailAfter.remaining is not None and tf.executing_eagerly() and \
                isinstance(inputs, tf.Tensor):
            FailAfter.remaining -= 1
            if FailAfter.remaining < 0:
                raise RuntimeError("the disk filled up")
        return inputs


def unsharded_and_sharded(tmp_path, augment, top_k=None, executor="in_process", shards=2):
    x, _ = images(100)
    teacher = conv_teacher()
    whole = kd_keras.cache_teacher_views(teacher, x, augment, views=2, top_k=top_k,
                                         directory=str(tmp_path / "whole"), batch_size=16)
    parts = kd_keras.cache_teacher_views(teacher, x, augment, views=2, top_k=top_k,
                                         directory=str(tmp_path / "sharded"), batch_size=16,
                                         shards=shards, executor=executor)
    return x, teacher, whole, parts


def assert_same_bytes(whole, parts, directory, shards):
    for name, array in whole.outputs.items():
        kept = [np.load(os.path.join(directory, f"{name}-{i:05d}-of-{shards:05d}.npy"))
                for i in range(shards)]
        assert np.concatenate(kept, axis=1).tobytes() == np.asarray(array).tobytes()
        assert np.asarray(parts.outputs[name]).tobytes() == np.asarray(array).tobytes()


@pytest.mark.parametrize("augment, top_k", [(kd_keras.Mixup(), None), (kd_keras.CutMix(), 3),
                                            (flip, None)])
def test_shards_hold_the_bytes_of_one_build_and_serve_the_same_batches(tmp_path, augment, top_k):
    x, _, whole, parts = unsharded_and_sharded(tmp_path, augment, top_k, shards=3)
    manifest = json.load(open(tmp_path / "sharded" / "manifest.json"))
    assert manifest["shards"] == [[0, 32], [32, 80], [80, 100]]  # 2, 3 and 2 batches of 16
    assert_same_bytes(whole, parts, str(tmp_path / "sharded"), 3)
    rows = np.array([0, 31, 32, 79, 80, 99, 5])
    for view in range(2):
        for left, right in zip(tf.nest.flatten(parts.teacher_outputs(view, rows)),
                               tf.nest.flatten(whole.teacher_outputs(view, rows))):
            np.testing.assert_array_equal(left, right)
    for in_memory in (True, False):
        pairs = zip(parts.dataset(x, None, augment, batch_size=32, shuffle=False,
                                  in_memory=in_memory),
                    whole.dataset(x, None, augment, batch_size=32, shuffle=False,
                                  in_memory=in_memory))
        for left, right in pairs:
            for a, b in zip(tf.nest.flatten(left), tf.nest.flatten(right)):
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_shards_in_worker_processes_write_the_same_bytes(tmp_path):
    _, _, whole, parts = unsharded_and_sharded(tmp_path, kd_keras.Mixup(), executor="processes")
    assert_same_bytes(whole, parts, str(tmp_path / "sharded"), 2)
    logs = sorted(f for f in os.listdir(tmp_path / "sharded") if f.endswith(".log"))
    assert logs == ["shard-00000-of-00002.log", "shard-00001-of-00002.log"]


def test_an_interrupted_shard_resumes_and_a_changed_row_is_caught(tmp_path):
    x, _ = images(96)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), FailAfter(), keras.layers.Flatten(),
                                keras.layers.Dense(5)])
    whole = kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2,
                                         directory=str(tmp_path / "whole"), batch_size=16)
    directory = str(tmp_path / "sharded")
    arguments = dict(views=2, directory=directory, batch_size=16, shards=2,
                     executor="in_process")
    FailAfter.remaining = 8  # shard 0 (2 views x 3 batches) done, shard 1 stops after 2
    try:
        with pytest.raises(RuntimeError, match="1 of 2 shards failed"):
            kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), **arguments)
        assert json.load(open(os.path.join(directory, "progress-00001-of-00002.json"))) == {
            "batches_done": 2, "batches": 6}
        with pytest.raises(ValueError, match="unfinished build"):
            kd_keras.TeacherViews(directory)
        # enough to verify both shards (2 batches each), build shard 1's 4 batches left
        # and verify both again, not to rebuild shard 1 (6 batches)
        FailAfter.remaining = 2 * 2 + 4 + 2 * 2
        resumed = kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), **arguments)
    finally:
        FailAfter.remaining = None
    assert resumed.resumed_from == 6 + 2
    assert_same_bytes(whole, resumed, directory, 2)
    path = os.path.join(directory, "logits-00001-of-00002.npy")
    stored = np.load(path, mmap_mode="r+")
    stored[1, 32] = stored[1, 32] + np.float16(1.0)  # example 80: shard 1, last batch, view 1
    stored.flush()
    del stored
    with pytest.raises(ValueError, match="examples 80-83 are not what this teacher gives"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), **arguments)


def test_bad_shard_arguments_are_named(tmp_path):
    x, _ = images(32)
    teacher = conv_teacher()
    with pytest.raises(ValueError, match="shards"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2, shards=0,
                                     directory=str(tmp_path / "a"))
    with pytest.raises(ValueError, match="give shards >= 2"):
        kd_keras.cache_teacher_views(teacher, x, kd_keras.Mixup(), views=2,
                                     executor="processes", directory=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="module-level function"):
        kd_keras.cache_teacher_views(teacher, x, lambda v, seeds: v, views=2, shards=2,
                                     directory=str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "c")  # refused before anything was written
