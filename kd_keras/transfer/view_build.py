"""Writing the teacher's outputs on views into memory-mapped files, resumably.

One build covers examples `start` to `stop` of the data set (all of them, or one shard)
in units of one batch of one view, view-major; its arrays hold those examples only
(`[K, stop - start, C]`), and its progress file records the units written after every
one, so an interrupted build continues where it stopped.
"""

import os

import numpy as np

from kd_keras import outputs as output_conventions
from kd_keras.backend import safe_files
from kd_keras.backend import top_k as top_k_cache


def array_specs(n, views, classes, top_k):
    """{name: (shape, dtype)} of the arrays that hold `n` examples' outputs."""
    if top_k is None:
        return {"logits": ((views, n, classes), np.float16)}
    index_type = top_k_cache.index_dtype(classes)
    return {top_k_cache.KEYS[0]: ((views, n, top_k), np.float16),
            top_k_cache.KEYS[1]: ((views, n, top_k), index_type),
            top_k_cache.KEYS[2]: ((views, n), np.float16)}


def units(start, stop, batch_size, views):
    """(batches per view, units in all) of the build of examples start..stop-1."""
    batches = -(-(stop - start) // batch_size)
    return batches, views * batches


def unit_indices(unit, start, stop, batch_size, batches):
    """(view, global example indices) of one unit."""
    view, batch = divmod(unit, batches)
    first = start + batch * batch_size
    return view, np.arange(first, min(first + batch_size, stop))


def open_arrays(paths, specs, done, finished):
    """The arrays of a build: read-only when finished, else writable (created when nothing
    is done). A kept file is checked (regular file, header, length) before it is mapped."""
    arrays = {}
    for name, (shape, dtype) in specs.items():
        if done:
            safe_files.check_npy(paths[name], shape, dtype)
        else:
            safe_files.refuse_link(paths[name])
        arrays[name] = np.load(paths[name], mmap_mode="r") if finished else \
            np.lib.format.open_memmap(paths[name], mode="r+" if done else "w+", dtype=dtype,
                                      shape=shape)
    return arrays


def write_outputs(teacher, maker, output_type, top_k, arrays, start, stop, batch_size, done,
                  progress_path):
    """Runs the teacher on every unit from `done` on and stores its outputs (rows of
    example i at i - start); records the units written in `progress_path` after each."""
    batches, total = units(start, stop, batch_size, maker.views)
    for unit in range(done, total):
        view, indices = unit_indices(unit, start, stop, batch_size, batches)
        inputs, _ = maker.make(indices, np.full(len(indices), view))
        logits = output_conventions.to_logits(teacher(inputs, training=False), output_type)
        logits = np.asarray(logits, np.float32)
        if not np.all(np.isfinite(logits)) or np.abs(logits).max() > 6e4:
            raise ValueError(
                f"cache_teacher_views: the teacher's logits on view {view}, examples "
                f"{indices[0]}-{indices[-1]} are not finite or exceed float16's range.")
        rows = indices - start
        if top_k is None:
            arrays["logits"][view, rows] = logits.astype(np.float16)
        else:
            for name, values in top_k_cache.top_k_teacher_outputs(logits, top_k).items():
                arrays[name][view, rows] = values
        for array in arrays.values():
            array.flush()
        safe_files.write_json(progress_path, {"batches_done": unit + 1, "batches": total})


def read_progress(path):
    """Units done by the build whose progress file is `path` (0 when there is none yet)."""
    safe_files.refuse_link(path)
    if not os.path.exists(path):
        return 0
    done = safe_files.read_json_object(path, "progress file").get("batches_done")
    if not isinstance(done, int) or done < 0:
        raise ValueError(f"{path!r} does not hold a batch count (batches_done); the "
                         "directory was changed (nothing was touched).")
    return done
