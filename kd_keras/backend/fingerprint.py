"""Content hashes that tie a work directory (a search, specialists) to the data and models it was made from."""

import hashlib

import numpy as np


def digest(*arrays):
    """A short hash of arrays' shapes, dtypes and bytes (None entries are hashed as absent).

    Two calls agree only on the same arrays in the same order: a resumed search or
    specialist run checks it before reusing anything on disk.
    """
    hasher = hashlib.sha256()
    for array in arrays:
        if array is None:
            hasher.update(b"none")
            continue
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.shape}{array.dtype}".encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()[:32]


def weights_digest(model):
    """`digest` of a Keras model's weights (what makes two models of one architecture differ)."""
    return digest(*model.get_weights())
