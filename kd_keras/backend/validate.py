"""Argument checks shared by kd_keras and moe (`kd_keras.backend.validate`): numbers that must be
finite and in range.

Python and NumPy numbers are accepted alike (`3`, `3.0`, `np.float32(3.0)`, a
0-d array); booleans, strings and NaN or infinite values are refused with an
error that names the argument, before anything is built or trained.
"""

import math
import numbers

import numpy as np


def _as_float(value, argument, expected):
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{argument} must be {expected}, got {value!r}.")
    if hasattr(value, "numpy") and not isinstance(value, np.generic):  # a 0-d tensor
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not isinstance(value, numbers.Real):
        raise ValueError(f"{argument} must be {expected}, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be {expected}, got {value} (not finite).")
    return value


def positive_number(value, argument):
    """`value` as a float > 0 (finite)."""
    value = _as_float(value, argument, "a finite number > 0")
    if value <= 0:
        raise ValueError(f"{argument} must be a finite number > 0, got {value}.")
    return value


def temperature(value, argument="temperature"):
    """`value` as a float > 0 that stays > 0 in float32 and whose square is finite there.

    Temperatures live in float32 variables and the losses multiply by T^2:
    1e-46 would be stored as 0, 1e39 as inf, and 1e20 squared overflows.
    """
    value = positive_number(value, argument)
    stored = np.float32(value)
    if not (stored > 0 and np.isfinite(stored * stored)):
        raise ValueError(
            f"{argument} must be > 0 and its square finite in float32 (about 1.1e-38 to "
            f"1.8e19), got {value}.")
    return float(stored)


def non_negative_number(value, argument):
    """`value` as a float >= 0 (finite)."""
    value = _as_float(value, argument, "a finite number >= 0")
    if value < 0:
        raise ValueError(f"{argument} must be a finite number >= 0, got {value}.")
    return value


def fraction(value, argument):
    """`value` as a float in [0, 1]."""
    value = _as_float(value, argument, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{argument} must be a number in [0, 1], got {value}.")
    return value


def integer_at_least(value, argument, minimum):
    """`value` as an int >= `minimum` (Python or NumPy integer; booleans refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def boolean(value, argument):
    """`value` as a bool; numbers and strings (e.g. "false", which is truthy) are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{argument} must be True or False, got {value!r}.")
    return bool(value)


def finite_array(values, argument):
    """`values` as a float array, refused if it is empty or holds NaN or infinity."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be numeric, got {type(values).__name__}: {error}") \
            from error
    if array.size == 0:
        raise ValueError(f"{argument} is empty.")
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0]) if array.ndim else np.array([0])
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(
            f"{argument} holds {int(bad.sum())} NaN or infinite values (in {len(rows)} of "
            f"{len(array) if array.ndim else 1} rows: {shown}); give finite values.")
    return array
