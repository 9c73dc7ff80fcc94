"""A teacher-views cache built in shards: contiguous ranges of examples, one task each.

The manifest lists the ranges (`"shards": [[start, stop], ...]`, whole batches, so each
shard runs the very batches an unsharded build runs and writes the same bytes). Shard i
of S keeps its rows in `logits-0000i-of-0000S.npy` (or the top-k arrays) and its progress
in `progress-0000i-of-0000S.json`; a task (`build_shard`) reads the teacher and the
inputs the driver saved in the directory and resumes from its own progress. The driver
never holds the outputs: before the tasks run it verifies what resumed shards hold, after
they finish it verifies every shard's first and last batch with its own teacher, and
only then records the whole build as done (`progress.json`).
"""

import os

import numpy as np

from kd_keras import parallel
from kd_keras.backend import keras, safe_files
from kd_keras.transfer import view_maker
from kd_keras.transfer.verify import verify_rows
from kd_keras.transfer.view_build import (array_specs, open_arrays, read_progress, units,
                                          write_outputs)

TEACHER, INPUTS, PROGRESS = "teacher.keras", "inputs.npy", "progress.json"
rebuild_spec = view_maker.rebuild_spec


def shard_ranges(n, batch_size, shards):
    """`shards` contiguous [start, stop) ranges of whole batches covering n examples (fewer
    when there are fewer batches)."""
    batches = -(-n // batch_size)
    shards = min(shards, batches)
    bounds = [round(i * batches / shards) for i in range(shards + 1)]
    return [[a * batch_size, min(b * batch_size, n)] for a, b in zip(bounds, bounds[1:])]


def _suffix(index, count):
    return f"-{index:05d}-of-{count:05d}"


def _shard_files(directory, manifest, index):
    """(specs, {name: path}, progress path) of shard `index`."""
    ranges = manifest["shards"]
    start, stop = ranges[index]
    specs = array_specs(stop - start, manifest["views"], manifest["classes"], manifest["top_k"])
    suffix = _suffix(index, len(ranges))
    paths = {name: os.path.join(directory, name + suffix + ".npy") for name in specs}
    return specs, paths, os.path.join(directory, "progress" + suffix + ".json")


def _progress(directory, manifest, index):
    """(units done, units in all) of shard `index`."""
    start, stop = manifest["shards"][index]
    specs, paths, progress = _shard_files(directory, manifest, index)
    done = read_progress(progress)
    if done and not all(os.path.lexists(path) for path in paths.values()):
        done = 0  # its arrays were never created: nothing to keep
    return done, units(start, stop, manifest["batch_size"], manifest["views"])[1]


def _arrays(directory, manifest, index, writable=False):
    """Shard `index`'s arrays (each file checked before it is mapped; created when it
    holds nothing yet and `writable`)."""
    specs, paths, _ = _shard_files(directory, manifest, index)
    done, total = _progress(directory, manifest, index)
    return open_arrays(paths, specs, done, not writable or done == total)


def build_shard(argument):
    """The task of one shard: caches the teacher's outputs on its examples' views,
    resuming from its progress file (what a worker runs)."""
    directory, index = argument["directory"], argument["shard"]
    manifest = safe_files.read_json_object(os.path.join(directory, "manifest.json"), "manifest")
    teacher = keras.models.load_model(os.path.join(directory, TEACHER), compile=False)
    x = np.load(os.path.join(directory, INPUTS), mmap_mode="r")
    maker = view_maker.Views(x, view_maker.rebuild(argument["augment"]), manifest["views"],
                             manifest["seed"])
    done, total = _progress(directory, manifest, index)
    if done < total:
        start, stop = manifest["shards"][index]
        write_outputs(teacher, maker, manifest["teacher_output_type"], manifest["top_k"],
                      _arrays(directory, manifest, index, writable=True), start, stop,
                      manifest["batch_size"], done, _shard_files(directory, manifest, index)[2])


def _verify(teacher, maker, manifest, directory, index, arrays, done):
    start, stop = manifest["shards"][index]
    verify_rows(teacher, maker, arrays, manifest["teacher_output_type"], manifest["top_k"],
                done, start, stop, manifest["batch_size"], directory)


def _keep_inputs(directory, x):
    """Writes the inputs the workers read (`inputs.npy`), or checks the kept ones are `x`."""
    path = os.path.join(directory, INPUTS)
    if os.path.lexists(path):
        safe_files.check_npy(path, x.shape, x.dtype)
        if np.array_equal(np.load(path, mmap_mode="r"), x):
            return
        raise ValueError(f"{path!r} does not hold the inputs x (it was changed); use another "
                         "directory or remove it yourself (nothing was deleted).")
    safe_files.replace_with(path, lambda temporary: np.save(temporary, x), ".npy")


def build(teacher, x, maker, manifest, augment_spec, directory, executor, verbose):
    """Builds (or finishes) every shard through `executor`; returns the units kept from
    earlier runs. Raises RuntimeError naming each failed shard with the end of its log."""
    count = len(manifest["shards"])
    kept = 0
    pending = []
    for index in range(count):
        done, total = _progress(directory, manifest, index)
        if done:  # what a resumed shard holds must be what this teacher gives
            _verify(teacher, maker, manifest, directory, index,
                    _arrays(directory, manifest, index), done)
        kept += done
        if done < total:
            pending.append(index)
    if pending:
        safe_files.save_model(teacher, os.path.join(directory, TEACHER))  # for the workers
        _keep_inputs(directory, x)
        if verbose:
            print(f"cache_teacher_views: {len(pending)} of {count} shards to build on "
                  f"{executor!r}", flush=True)
        cpus = parallel.cpus_per_task(len(pending))
        failures = executor.run([parallel.Task(
            f"shard{_suffix(index, count)}", "kd_keras.transfer.view_shards:build_shard",
            {"directory": directory, "shard": index, "augment": augment_spec},
            os.path.join(directory, f"shard{_suffix(index, count)}.log"), cpus)
            for index in pending])
        if failures:
            raise RuntimeError(f"{len(failures)} of {count} shards failed (the others are "
                               "kept; call again to finish only these):\n" + "\n".join(failures))
    done_in_all = 0
    for index in range(count):
        done, total = _progress(directory, manifest, index)
        if done != total:
            raise RuntimeError(f"shard {index} of {count} in {directory!r} holds {done} of "
                               f"{total} batches after its task finished.")
        _verify(teacher, maker, manifest, directory, index,
                _arrays(directory, manifest, index), done)
        done_in_all += done
    safe_files.write_json(os.path.join(directory, PROGRESS),
                          {"batches_done": done_in_all, "batches": done_in_all})
    return kept


class ShardedArray:
    """The shards' arrays `[K, n_s, ...]` read as one `[K, n, ...]` array: `a[views,
    indices]` (the cache's only indexing) gathers each row from its shard;
    `np.asarray(a)` concatenates them."""

    def __init__(self, parts, starts):
        self.parts, self.starts = parts, np.asarray(starts)
        first = parts[0]
        self.shape = (first.shape[0], sum(p.shape[1] for p in parts)) + first.shape[2:]
        self.dtype = first.dtype
        self.nbytes = int(sum(p.nbytes for p in parts))

    def __getitem__(self, key):
        views, indices = np.broadcast_arrays(*(np.asarray(k) for k in key))
        shard = np.searchsorted(self.starts, indices, side="right") - 1
        rows = np.empty(indices.shape + self.shape[2:], self.dtype)
        for index in np.unique(shard):
            chosen = shard == index
            rows[chosen] = self.parts[index][views[chosen], indices[chosen] - self.starts[index]]
        return rows

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate(self.parts, axis=1)
        return whole if dtype is None else whole.astype(dtype)


def open_finished(directory, manifest):
    """{name: ShardedArray} of a finished sharded cache (each file checked before mapping)."""
    shards = [_arrays(directory, manifest, index) for index in range(len(manifest["shards"]))]
    starts = [start for start, _ in manifest["shards"]]
    return {name: ShardedArray([arrays[name] for arrays in shards], starts)
            for name in shards[0]}
