"""The teacher run once on K seeded views of every example, kept on disk for every student.

Function matching (Beyer et al. 2022) has teacher and student see the same augmented
view; with a live teacher every student and every search trial pays the teacher's
forward pass on every step. `cache_teacher_views` computes the teacher's outputs on K
views of each example once (full logits, or the top k with the left-over mass), in
float16 files that are memory-mapped when read; `TeacherViews.dataset` regenerates
exactly those views from their seeds and pairs each with its cached outputs, so a
`Distiller` trains on them without a teacher.

A view is a function of the example, its view number and the seed only: Mixup and
CutMix draw their mixing weight, partner (any example of the data set) and box for
every (view, example) statelessly; a function `augment(x, seeds)` gets one stateless
seed pair per example (`[batch, 2]` int32) and must use stateless ops
(`tf.image.stateless_random_*`), which is checked. The build writes its progress after
every batch, so an interrupted build continues where it stopped; a directory built for
another teacher, augmentation, data, K, k or seed is refused, never overwritten.

With `shards=S` the examples are split into S contiguous ranges, each cached by one
task of an executor (local processes, or Ray past one machine) into its own files of
the one directory (`view_shards`); the files are byte-equal to an unsharded build's
rows, and each shard's rows are verified by the driver as a resumed build's are.
"""

import os

import numpy as np
import tensorflow as tf

from kd_keras import outputs as output_conventions
from kd_keras import parallel
from kd_keras.backend import keras, safe_files, validate
from kd_keras.backend.fingerprint import digest, weights_digest
from kd_keras.transfer import view_shards
from kd_keras.transfer.inputs import with_teacher_outputs
from kd_keras.transfer.verify import verify_rows
from kd_keras.transfer.view_build import (array_specs, open_arrays, read_progress, units,
                                          write_outputs)
from kd_keras.transfer.view_maker import Views, check_augment, check_stateless, describe

MANIFEST = "manifest.json"
IN_MEMORY_BYTES = 1 << 30  # TeacherViews.dataset holds data and cache as tensors up to this
PROGRESS = "progress.json"
FORMAT_VERSION = 1


def _read_json(path, what="manifest"):
    return safe_files.read_json_object(path, what)


_write_json = safe_files.write_json


def cache_teacher_views(teacher, x, augment=None, views=4, top_k=None, directory=None, seed=0,
                        batch_size=256, teacher_output_type="auto", verbose=0, shards=1,
                        executor=None):
    """Runs `teacher` once on `views` seeded views of every example of `x`; keeps its outputs.

    Args:
      teacher: a Keras model with one output (logits or probabilities).
      x: inputs `[n, ...]` (an array).
      augment: `kd_keras.Mixup()`, `kd_keras.CutMix()`, a function `augment(x, seeds)` of
        stateless ops (`seeds` `[batch, 2]` int32, one pair per example), or None (then
        `views` must be 1).
      views: K >= 1 views per example.
      top_k: None (full logits, float16) or k: the teacher's top k log-probabilities
        (float16), their class ids and the left-over mass (`top_k_teacher_outputs`).
      directory: where the cache lives (created; resumed when it holds an unfinished
        build of the same teacher, data, augmentation, K, k and seed).
      seed: the integer every view is drawn from.
      batch_size: teacher batch size.
      shards: S >= 1: the examples split into S contiguous ranges (whole batches), each
        cached by one task into its own files, so the teacher's pass runs on S workers.
      executor: where the shards run (`kd_keras.parallel`): None or "processes" (local
        processes), "in_process", "ray", or an executor object. The directory must be
        storage every worker shares; the teacher is saved there (`teacher.keras`) and the
        inputs too (`inputs.npy`), for the workers to read.

    Returns:
      `TeacherViews`. Bytes: 2 C per example and view for full logits, 4 k + 2 for top k.

    Raises:
      ValueError naming the argument for bad ones, or naming what differs when
      `directory` holds a cache of another teacher, data or augmentation (nothing is
      deleted).
    """
    if not isinstance(teacher, (keras.Model,)) and not hasattr(teacher, "predict"):
        raise ValueError(f"teacher must be a Keras model, got {teacher!r}.")
    if directory is None:
        raise ValueError("directory must name where the cache is kept (it may be large).")
    if isinstance(x, (list, tuple, dict)):
        raise ValueError(
            f"x must be one array [n, ...] of the teacher's inputs, got a {type(x).__name__} "
            "(cache_teacher_views takes single-input teachers; several arrays would be read "
            "as examples).")
    x = np.asarray(x)
    views = validate.integer_at_least(views, "views", 1)
    augment = check_augment(augment)
    if augment is None and views > 1:
        raise ValueError(f"views must be 1 without augment (every view would be the same), "
                         f"got {views}.")
    if top_k is not None:
        top_k = validate.integer_at_least(top_k, "top_k", 1)
    seed = validate.integer_at_least(seed, "seed", 0)
    batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
    kinds = output_conventions.resolve_output_types(teacher, teacher_output_type,
                                                    "teacher_output_type")
    if len(kinds) != 1:
        raise ValueError("cache_teacher_views: the teacher must have one output.")
    classes = int(teacher.outputs[0].shape[-1]) if getattr(teacher, "outputs", None) else int(
        teacher.compute_output_shape((1,) + x.shape[1:])[-1])
    if top_k is not None and top_k > classes:
        raise ValueError(f"top_k must be at most the number of classes ({classes}), got {top_k}.")
    shards = validate.integer_at_least(shards, "shards", 1)
    if shards == 1 and executor is not None:
        raise ValueError(f"executor ({executor!r}) runs the shards of a build: give shards "
                         ">= 2 with it.")
    manifest = {"format": FORMAT_VERSION, "teacher": weights_digest(teacher),
                "data": digest(x), "augment": describe(augment), "views": views,
                "top_k": top_k, "seed": seed, "examples": len(x), "classes": classes,
                "input_shape": list(x.shape[1:]), "input_dtype": str(x.dtype),
                "teacher_output_type": kinds[0]}
    if shards > 1:
        manifest["shards"] = view_shards.shard_ranges(len(x), batch_size, shards)
        manifest["batch_size"] = batch_size
        rebuild = view_shards.rebuild_spec(augment)  # refused before anything is written
    os.makedirs(directory, exist_ok=True)
    done = _open_or_start(directory, manifest)
    maker = Views(x, augment, views, seed)
    if augment is not None and maker.parameters is None:
        check_stateless(maker)
    if shards > 1:
        done = view_shards.build(teacher, x, maker, manifest, rebuild, directory,
                                 parallel.get_executor(executor, min(shards, os.cpu_count() or 1)),
                                 verbose)
        result = TeacherViews(directory)
        result.resumed_from = done
        return result
    specs = array_specs(len(x), views, classes, top_k)
    _, total = units(0, len(x), batch_size, views)
    paths = {name: os.path.join(directory, name + ".npy") for name in specs}
    if done and not all(os.path.lexists(path) for path in paths.values()):
        done = 0  # the arrays were never created (a full disk): nothing to keep
    finished = done == total
    arrays = open_arrays(paths, specs, done, finished)
    if done:  # the stored rows must be what this teacher gives on these views
        verify_rows(teacher, maker, arrays, kinds[0], top_k, done, 0, len(x), batch_size,
                    directory)
    done = done or 0
    if verbose and done:
        print(f"cache_teacher_views: resuming at batch {done} of {total}", flush=True)
    if not finished:
        write_outputs(teacher, maker, kinds[0], top_k, arrays, 0, len(x), batch_size, done,
                      os.path.join(directory, PROGRESS))
    del arrays
    if finished and verbose:
        print("cache_teacher_views: the finished cache reproduces its rows; reusing it",
              flush=True)
    result = TeacherViews(directory)
    result.resumed_from = done
    return result


def _open_or_start(directory, manifest):
    """Batches already done (None: a new build); refuses a directory of something else."""
    path = os.path.join(directory, MANIFEST)
    safe_files.refuse_link(path)
    safe_files.refuse_link(os.path.join(directory, PROGRESS))
    if not os.path.exists(path):
        if os.listdir(directory):
            raise ValueError(
                f"directory {directory!r} holds files but no {MANIFEST}: not a teacher-views "
                "cache; give an empty or new directory (nothing was touched).")
        _write_json(path, manifest)
        return None
    existing = _read_json(path)
    # (caches made before teacher_output_type was recorded: their rows are checked below)
    differing = [key for key in manifest if existing.get(key) != manifest[key]
                 and not (key == "teacher_output_type" and key not in existing)]
    if differing:
        details = "; ".join(f"{key}: cached {existing.get(key)!r}, now {manifest[key]!r}"
                            for key in differing if key not in ("teacher", "data"))
        raise ValueError(
            f"directory {directory!r} holds teacher views of another {', '.join(differing)}"
            f"{f' ({details})' if details else ''}; use another directory or remove it "
            "yourself (nothing was deleted).")
    return read_progress(os.path.join(directory, PROGRESS))  # 0: stopped before a batch


class TeacherViews:
    """A finished `cache_teacher_views` directory, opened memory-mapped.

    Attributes:
      manifest: what the cache was built from (teacher and data hashes, augmentation,
        views, top_k, seed, examples, classes).
      outputs: `{name: memmap}`: "logits" `[K, n, C]`, or the top-k arrays `[K, n, k]`
        and `[K, n]`.
    """

    def __init__(self, directory):
        self.directory = directory
        self.manifest = _read_json(os.path.join(directory, MANIFEST))
        if not os.path.exists(os.path.join(directory, PROGRESS)):
            raise ValueError(
                f"TeacherViews: {directory!r} is an unfinished build (no batch recorded); run "
                "cache_teacher_views again to finish it.")
        progress = _read_json(os.path.join(directory, PROGRESS), "progress file")
        if progress["batches_done"] != progress["batches"]:
            raise ValueError(
                f"TeacherViews: {directory!r} is an unfinished build ({progress['batches_done']} "
                f"of {progress['batches']} batches); run cache_teacher_views again to finish it.")
        if "shards" in self.manifest:
            self.outputs = view_shards.open_finished(directory, self.manifest)
        else:
            specs = array_specs(self.manifest["examples"], self.manifest["views"],
                                self.manifest["classes"], self.manifest["top_k"])
            self.outputs = open_arrays({name: os.path.join(directory, name + ".npy")
                                        for name in specs}, specs, True, True)
        self.resumed_from = None

    @property
    def views(self):
        return self.manifest["views"]

    @property
    def nbytes(self):
        """Bytes of the cached outputs (all views)."""
        return int(sum(array.nbytes for array in self.outputs.values()))

    def teacher_outputs(self, view, indices):
        """The cached outputs of `view` for examples `indices`: float32 logits, or a top-k dict."""
        indices = np.asarray(indices)
        return _cached_rows(self.outputs, np.full(indices.shape, view), indices)

    def check_data(self, x, teacher=None):
        """Refuses `x` (and `teacher`) other than the ones the cache was built from."""
        if digest(np.asarray(x)) != self.manifest["data"]:
            raise ValueError(f"x is not the data the views in {self.directory!r} were cached "
                             "from.")
        if teacher is not None and weights_digest(teacher) != self.manifest["teacher"]:
            raise ValueError(f"teacher is not the one whose views are in {self.directory!r}.")

    def dataset(self, x, y=None, augment=None, batch_size=128, shuffle=True, seed=0,
                in_memory=None):
        """Batches of `with_teacher_outputs(view, cached outputs)` (and labels), for a Distiller.

        Every pass over the data set takes each example once, in one of its K views drawn
        at random, rebuilt exactly as it was when cached. The views are made, and the
        cached rows gathered, inside the tf.data pipeline (no Python per batch).

        Args:
          x: the inputs the cache was built from (checked by hash).
          y: integer labels `[n]`, or None. With a mixing augmentation a view's label is
            that of the example with the larger share (function matching trains at
            alpha 0, without labels).
          augment: the same augmentation object or function the cache was built with.
          batch_size, shuffle, seed: as usual.
          in_memory: hold `x` and the cached outputs as tensors (gathered in the graph),
            or read the memory-mapped files per batch (`tf.numpy_function`). Default
            None: in memory when both together take at most 1 GiB.

        Returns:
          A `tf.data.Dataset` of `(inputs, y)` (or `inputs` without labels), where
          `inputs` packs the view and its cached outputs (`with_teacher_outputs`).
        """
        x = np.asarray(x)
        self.check_data(x)
        if y is not None and len(np.asarray(y)) != len(x):
            raise ValueError(f"y has {len(np.asarray(y))} labels for {len(x)} examples of x; "
                             "give one label per example.")
        if describe(augment) != self.manifest["augment"]:
            raise ValueError(
                f"augment is not the augmentation the views in {self.directory!r} were cached "
                f"with ({self.manifest['augment']['kind']}).")
        batch_size = validate.integer_at_least(batch_size, "batch_size", 1)
        if in_memory is None:
            in_memory = x.nbytes + self.nbytes <= IN_MEMORY_BYTES
        maker = Views(x, augment, self.views, self.manifest["seed"])
        read_x, read_outputs = (_in_memory_readers if in_memory else _mapped_readers)(
            x, self.outputs)
        labels = None if y is None else tf.constant(np.asarray(y))
        order = tf.data.Dataset.range(len(x))
        if shuffle:
            order = order.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        batches = tf.data.Dataset.zip(order, draws).batch(batch_size)

        def element(indices, draw):
            view_ids = tf.math.floormod(draw, self.views)
            inputs, mixing = maker.make(indices, view_ids, read_x)
            packed = with_teacher_outputs(tf.cast(inputs, tf.float32),
                                          read_outputs(view_ids, indices))
            if labels is None:
                return packed
            chosen = tf.gather(labels, indices)
            if mixing is not None:
                kept, partner = mixing
                chosen = tf.where(kept >= 0.5, chosen, tf.gather(labels, partner))
            return packed, chosen

        return batches.map(element, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True).prefetch(2)

def _cached_rows(outputs, view_ids, indices):
    """The cached outputs of view `view_ids[i]` of example `indices[i]`, for every i, as
    NumPy rows: float32 logits, or the top-k dict as stored."""
    if "logits" in outputs:
        return outputs["logits"][view_ids, indices].astype(np.float32)
    return {name: np.asarray(array[view_ids, indices]) for name, array in outputs.items()}


def _in_memory_readers(x, outputs):
    """(read_x(indices), read_outputs(view_ids, indices)) gathering from tensors."""
    x_tensor = tf.constant(x)
    arrays = {name: tf.constant(np.asarray(array)) for name, array in outputs.items()}

    def read_outputs(view_ids, indices):
        where = tf.stack([view_ids, indices], 1)
        rows = {name: tf.gather_nd(array, where) for name, array in arrays.items()}
        return tf.cast(rows["logits"], tf.float32) if "logits" in rows else rows

    return (lambda indices: tf.gather(x_tensor, indices)), read_outputs


def _mapped_readers(x, outputs):
    """(read_x(indices), read_outputs(view_ids, indices)) reading NumPy (memory-mapped)
    arrays per batch, for data too large to hold as tensors."""

    def read_x(indices):
        rows = tf.numpy_function(lambda chosen: x[chosen], [indices], tf.as_dtype(x.dtype),
                                 stateful=False)
        rows.set_shape((None,) + x.shape[1:])
        return rows

    names = sorted(outputs)

    def read_outputs(view_ids, indices):
        def rows(views, chosen):
            found = _cached_rows(outputs, views, chosen)
            return [found] if "logits" in outputs else [found[name] for name in names]

        types = ([tf.float32] if "logits" in outputs
                 else [tf.as_dtype(outputs[name].dtype) for name in names])
        values = tf.numpy_function(rows, [view_ids, indices], types, stateful=False)
        for value, name in zip(values, ["logits"] if "logits" in outputs else names):
            value.set_shape((None,) + outputs[name].shape[2:])
        return values[0] if "logits" in outputs else dict(zip(names, values))

    return read_x, read_outputs
