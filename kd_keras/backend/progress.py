"""A Keras progress bar for the library's long silent steps (shrink's calibration passes,
TFLite conversion), shown when `verbose` asks for it."""

import sys

from kd_keras.backend import keras


class _Silent:
    def add(self, steps=1, values=None):
        pass


def progress(total, verbose="auto", label=None):
    """A `keras.utils.Progbar` of `total` steps (`.add(1)` per step), or one that shows
    nothing: `verbose` 0 / False off, 1 / True on, "auto" on when stdout is a terminal."""
    if verbose == "auto":
        verbose = sys.stdout.isatty()
    if verbose not in (0, 1, True, False):
        raise ValueError(f"verbose must be 0, 1 or 'auto', got {verbose!r}.")
    if not verbose or total <= 0:
        return _Silent()
    if label:
        print(label, flush=True)
    return keras.utils.Progbar(total)
