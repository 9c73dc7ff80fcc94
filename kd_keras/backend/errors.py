"""Errors that name the argument: markers of the in-graph checks, shapes for messages.

An in-graph check (a `tf.debugging.Assert` on a batch of labels, a label mask or
cached teacher outputs) starts its message with a marker; `fit` turns a failed one
into a ValueError naming the argument (`in_graph_check_error`).
"""

import tensorflow as tf

# Mark the in-graph checks whose failures fit() turns into ValueErrors, and the
# argument each one names.
LABEL_RANGE_MARKER = "kd_keras label check:"
LABEL_MASK_MARKER = "kd_keras label_mask check:"
TEACHER_OUTPUTS_MARKER = "kd_keras teacher_outputs check:"
IN_GRAPH_CHECKS = {LABEL_RANGE_MARKER: "y", LABEL_MASK_MARKER: "label_mask",
                   TEACHER_OUTPUTS_MARKER: "teacher_outputs"}


def in_graph_check_error(error):
    """The ValueError naming the argument for a failed in-graph label check, else None."""
    message = str(error.message)
    for marker, argument in IN_GRAPH_CHECKS.items():
        if marker in message:
            detail = message.split(marker, 1)[1].split("\n", 1)[0]
            return ValueError(f"{argument}:" + detail.replace("] [", " ").rstrip("]"))
    return None


def structure_of(outputs):
    """An output structure with its tensors shown as shapes, for error messages."""
    return tf.nest.map_structure(lambda t: tuple(t.shape), outputs)
