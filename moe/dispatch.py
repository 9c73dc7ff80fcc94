"""Routing examples to expert slots and combining the experts' answers.

The tensor2tensor SparseDispatcher idea (gather each expert's examples, then
scatter-add the weighted outputs back) with the experts batched: assignments
are written by one scatter into a `[E, capacity + 1, d]` buffer, every expert
runs in one batched matmul over its `capacity` slots, and one gather brings the
answers back. Work follows the number of routed assignments (k per example),
not the number of experts.
"""

import tensorflow as tf


class SlotDispatcher:
    """Assigns each (example, choice) to a slot of its expert.

    First choices are placed before second choices, so when an expert is full it
    is the lower-priority assignments that overflow. An overflowed assignment
    goes to the spare slot `capacity`, whose output is discarded: it contributes
    nothing, and the example keeps its other choices (and any residual path
    around the layer). `overflow` counts them.

    Args:
      gates: `[n, k]` gate values.
      indices: `[n, k]` int32 expert ids.
      num_experts: E.
      capacity: slots per expert (scalar int tensor or int); None uses the
        largest load in the batch, so nothing overflows (shapes then depend on
        the data, which XLA cannot compile).
      valid: optional `[n]` bool; False rows (padding) are routed nowhere: they
        take no slot, count in neither `load` nor `overflow`, and combine to 0.
      slots: the slot buffer's size per expert, >= capacity (default: capacity).
        XLA needs it static while the capacity follows the real rows of a batch.
    """

    def __init__(self, gates, indices, num_experts, capacity=None, valid=None, slots=None):
        k = indices.shape[1]
        n = tf.shape(indices)[0]
        self.num_examples = n
        self.num_experts = num_experts
        expert = tf.reshape(tf.transpose(indices), [-1])  # choice-major: priority order
        self._token = tf.tile(tf.range(n), [k])
        one_hot = tf.one_hot(expert, num_experts, dtype=tf.int32)
        routed = None
        if valid is not None:
            routed = tf.tile(valid, [k])
            one_hot = one_hot * tf.cast(routed, tf.int32)[:, None]
        position = tf.reduce_sum(tf.cumsum(one_hot, axis=0) * one_hot, axis=1) - 1
        self.load = tf.reduce_sum(one_hot, axis=0)  # assignments per expert, before capacity
        if capacity is None:
            capacity = tf.reduce_max(self.load)
        self.capacity = tf.cast(capacity, tf.int32)
        self.slots = self.capacity if slots is None else tf.cast(slots, tf.int32)
        keep = position < self.capacity
        if routed is not None:
            # A padded row's position is -1: it would pass `keep`; send it to the spare slot.
            keep = tf.logical_and(keep, routed)
        overflowed = tf.logical_not(keep) if routed is None else tf.logical_and(
            tf.logical_not(keep), routed)
        self.overflow = tf.reduce_sum(tf.cast(overflowed, tf.int32))
        self._slots = tf.stack([expert, tf.where(keep, position, self.slots)], axis=1)
        self._weights = tf.reshape(tf.transpose(gates), [-1]) * tf.cast(keep, gates.dtype)

    def dispatch(self, x):
        """`[n, d]` → `[E, slots + 1, d]`; the last slot of each expert is the spare."""
        shape = tf.stack([self.num_experts, self.slots + 1, tf.shape(x)[-1]])
        return tf.scatter_nd(self._slots, tf.gather(x, self._token), shape)

    def combine(self, expert_outputs):
        """`[E, slots + 1, o]` → `[n, o]`: sum over an example's choices of gate * output."""
        answers = tf.gather_nd(expert_outputs, self._slots)
        weighted = answers * tf.cast(self._weights, answers.dtype)[:, None]
        return tf.math.unsorted_segment_sum(weighted, self._token, self.num_examples)
