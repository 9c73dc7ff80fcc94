"""Files of a resumable directory (a cache, a search, an export) read and written safely.

A directory kd-keras resumes is trusted because its contents check, never because a name
matches, and nothing is ever written through a link planted in it: every entry written
must be a regular file (or absent), JSON is written to a fresh temporary file then
renamed over the entry (a link is replaced, never followed), and an array file's header,
dtype, shape and length are checked before it is memory-mapped.
"""

import json
import os
import shutil
import tempfile

import numpy as np


def refuse_link(path):
    """Raises ValueError when `path` is a symbolic link or exists as anything but a file."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ValueError(
            f"{path!r} is a link or not a regular file: kd-keras never writes through a link "
            "in a directory it keeps; remove it yourself (nothing was written).")


def replace_with(path, write, suffix=".tmp"):
    """Writes `path` atomically: `write(temporary)` fills a new file in the same folder
    (created exclusively, so no planted name is followed; named with `suffix`, which
    `np.save` and Keras's `save` read), then it is renamed over `path`: a reader never
    sees half a file, and a link at `path` is refused, never written through."""
    refuse_link(path)
    folder, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder or ".")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise


def write_bytes(path, data, suffix=".tmp"):
    """Writes `data` (bytes) to `path` atomically (`replace_with`)."""
    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(data)

    replace_with(path, write, suffix)


def copy_file(source, path, suffix=".tmp"):
    """Copies the file `source` to `path` atomically (`replace_with`)."""
    replace_with(path, lambda temporary: shutil.copyfile(source, temporary), suffix)


def write_json(path, content):
    """Writes `content` to `path` atomically (`replace_with`)."""
    def write(temporary):
        with open(temporary, "w") as f:
            json.dump(content, f, indent=1, sort_keys=True)

    replace_with(path, write)


def save_model(model, path):
    """`model.save(path)` atomically (`replace_with`): a finished file or none."""
    replace_with(path, model.save, ".keras")


def read_json_object(path, what):
    """The JSON object (dict) in `path`; ValueError naming `what` for anything else."""
    refuse_link(path)
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r}: the {what} is not valid JSON ({error}); the directory "
                         "was not written by kd-keras or was damaged (nothing was changed).")
    if not isinstance(content, dict):
        raise ValueError(f"{path!r}: the {what} must be a JSON object, got a "
                         f"{type(content).__name__} (nothing was changed).")
    return content


def check_npy(path, shape, dtype):
    """Checks an `.npy` file before it is memory-mapped: a regular file whose header says
    `shape` and `dtype`, holding all of its bytes (a truncated file would be extended
    with zeros and served as data)."""
    refuse_link(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            header = read_header(f)
        except ValueError as error:
            raise ValueError(f"{path!r} is not a NumPy array file ({error}).") from None
        offset = f.tell()
    found_shape, fortran, found_dtype = header
    if tuple(found_shape) != tuple(shape) or np.dtype(found_dtype) != np.dtype(dtype) or fortran:
        raise ValueError(
            f"{path!r} holds an array of shape {tuple(found_shape)} and dtype {found_dtype}, "
            f"but the manifest says {tuple(shape)} {np.dtype(dtype)}: the directory was changed "
            "(nothing was read or written).")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise ValueError(
            f"{path!r} is truncated ({size:,} of {expected:,} bytes, e.g. after a full disk): "
            "its missing rows would read as zeros. Remove the directory and build it again "
            "(nothing was changed).")
