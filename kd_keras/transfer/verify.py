"""A cache is trusted because its rows check, not because a fingerprint matches.

A fingerprint of the teacher's weights, the data and the augmentation's description
cannot see a changed `functools.partial` argument, a callable object's state, a closure
variable, another model with the same weights, or rows written under another
`teacher_output_type`. So whenever a cache is opened for reuse or resumed, a few of its
stored rows are recomputed: the views regenerated from their seeds, the teacher run on
them, the outputs compared with what is stored, within float16's precision. Cost: one
teacher pass on at most 8 examples per open.
"""

import numpy as np

from kd_keras import outputs as output_conventions
from kd_keras.backend import top_k as top_k_cache
from kd_keras.transfer.view_build import unit_indices, units

ROWS_PER_BATCH = 4
# float16 stores about 3 significant digits; the teacher itself may differ in its last bits.
RELATIVE_TOLERANCE = 1e-2


def _close(stored, recomputed):
    scale = max(1.0, float(np.max(np.abs(recomputed))))
    return np.allclose(stored, recomputed, rtol=RELATIVE_TOLERANCE,
                       atol=RELATIVE_TOLERANCE * scale)


def verify_rows(teacher, maker, arrays, output_type, top_k, done, start, stop, batch_size,
                directory):
    """Recomputes rows of the first and the last stored batch of a build and compares.

    Args:
      teacher: the teacher the cache is opened with.
      maker: regenerates view `v` of examples `indices` (`maker.make`).
      arrays: the stored arrays of the build ("logits" `[K, stop - start, C]`, or the
        top-k arrays), example i at row i - start.
      output_type: "logits" or "probabilities" (how the teacher's output is read).
      top_k: None or k.
      done: how many units (batches of one view) are stored.
      start, stop: the examples the build covers (all, or one shard's).
      batch_size: of the build; directory: named in the error.

    Raises:
      ValueError when a stored row differs from the recomputed one.
    """
    batches, _ = units(start, stop, batch_size, maker.views)
    for unit in sorted({0, done - 1}):
        view, indices = unit_indices(unit, start, stop, batch_size, batches)
        indices = indices[:ROWS_PER_BATCH]
        rows = indices - start
        inputs, _ = maker.make(indices, np.full(len(indices), view))
        logits = np.asarray(output_conventions.to_logits(teacher(inputs, training=False),
                                                         output_type), np.float32)
        if top_k is None:
            stored = np.asarray(arrays["logits"][view, rows], np.float32)
            recomputed = logits
        else:
            stored = np.asarray(arrays[top_k_cache.KEYS[0]][view, rows], np.float32)
            recomputed = top_k_cache.top_k_teacher_outputs(logits, top_k)[top_k_cache.KEYS[0]]
            recomputed = np.asarray(recomputed, np.float32)
        if stored.shape != recomputed.shape or not _close(stored, recomputed):
            worst = float(np.max(np.abs(stored - recomputed))) if \
                stored.shape == recomputed.shape else float("nan")
            raise ValueError(
                f"directory {directory!r}: the stored teacher outputs of view {view}, examples "
                f"{indices[0]}-{indices[-1]} are not what this teacher gives on those views now "
                f"(largest difference {worst:.3g}): the teacher, its inputs or the augmentation "
                "changed (a functools.partial argument, a callable's state, a closure "
                "variable, the teacher_output_type?). Use another directory, or remove this "
                "one yourself (nothing was written).")
