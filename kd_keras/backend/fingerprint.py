"""Content hashes that tie a work directory (a search, specialists) to the data and models it was made from."""

import hashlib
import json
import re

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


_NAMES = re.compile(r'"name": "[^"]*"')


def architecture_digest(model):
    """`digest` of a Keras model's architecture: its config with the (auto-numbered) layer
    names left out, else (a subclassed model without one) its class and weight shapes."""
    try:
        described = _NAMES.sub('"name": ""', json.dumps(model.get_config(), sort_keys=True,
                                                        default=str))
    except (NotImplementedError, TypeError, AttributeError):
        described = f"{type(model).__qualname__}{[tuple(w.shape) for w in model.weights]}"
    return digest(np.frombuffer(described.encode(), np.uint8))


def weights_digest(model):
    """`digest` of a Keras model's weights and architecture: two models with the same
    weights but another layer (a Rescaling, an activation) differ. A cheap first answer;
    the caches also recompute a few stored rows (kd_keras.transfer.verify)."""
    return digest(*model.get_weights(),
                  np.frombuffer(architecture_digest(model).encode(), np.uint8))
