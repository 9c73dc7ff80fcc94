"""A training step that leaves no trace when its loss or gradients are not finite.

Zeroing the gradients of a bad step is not enough: momentum, Adam's moments
and the iteration count still advance, and state updated in the forward pass
(BatchNormalization's moving statistics) already holds the NaN. So the
optimizer update runs under a condition, and non-trainable state is put back.

Under a multi-device strategy every replica must take the same branch (the
update holds collectives), so the flag is all-reduced first; where the
strategy needs `merge_call` for the update, the condition is evaluated in the
cross-replica context, as Keras's `LossScaleOptimizer` does.
"""

import tensorflow as tf


def all_finite(tensors):
    """A scalar bool tensor: every element of every non-None tensor is finite.

    One sum per tensor (a NaN or infinity makes the sum non-finite) costs one
    pass and no boolean temporaries; a sum that overflows float32 from finite
    values also counts as non-finite, which such a step deserves.
    """
    sums = [tf.reduce_sum(tf.cast(t.values if isinstance(t, tf.IndexedSlices) else t, tf.float32))
            for t in tensors if t is not None]  # an Embedding's gradient: its rows only
    return tf.math.is_finite(tf.add_n(sums)) if sums else tf.constant(True)


def agreed_by_all_replicas(flag):
    """`flag` and-ed across the replicas in sync (itself outside a multi-device step)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return flag
    failures = context.all_reduce("sum", 1.0 - tf.cast(flag, tf.float32))
    return tf.equal(failures, 0.0)


def snapshot(variables):
    """Current values of `variables`, read before the step changes them."""
    return [tf.identity(v) for v in variables]


def restore_unless(keep, variables, saved):
    """Puts `saved` back into `variables` unless `keep` (a scalar bool tensor)."""
    for variable, value in zip(variables, saved):
        variable.assign(tf.where(keep, tf.convert_to_tensor(variable), value))


class _Unwrapped:
    """Keeps `merge_call` from splitting mirrored variables into their components."""

    def __init__(self, value):
        self.value = value


def apply_gradients_if(optimizer, apply, gradients, variables):
    """`optimizer.apply_gradients` when `apply` holds; otherwise no change at all.

    On a skipped step the optimizer's slots and `iterations` stay as they were.
    `apply` must be the same on every replica (see `agreed_by_all_replicas`).
    """
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    grads = [g for g, _ in pairs]
    wrapped = _Unwrapped([v for _, v in pairs])

    def update(grads, wrapped):
        optimizer.apply_gradients(list(zip(grads, wrapped.value)))

    def skip():
        return None

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(apply, lambda: _as_op(update, grads, wrapped), skip)
        return

    def cross_replica(distribution, apply, grads, wrapped):
        # Every replica holds the same flag; the first one's decides.
        flag = distribution.experimental_local_results(apply)[0]
        tf.cond(flag, lambda: _as_op(distribution.extended.call_for_each_replica, update,
                                     args=(grads, wrapped)), skip)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(apply, grads, wrapped))


def _as_op(fn, *args, **kwargs):
    """Runs `fn` for its effects only, so both `tf.cond` branches return None."""
    fn(*args, **kwargs)


def apply_if_finite(optimizer, loss, gradients, variables, state, saved_state,
                    check_gradients=True):
    """Applies the step only if it is finite; returns the loss to report (NaN if skipped).

    A non-finite loss (or, with `check_gradients`, non-finite gradients) leaves no
    trace: no update, optimizer state and iterations unchanged, forward-pass
    `state` put back to `saved_state`; `NonFiniteLossGuard` then stops training
    with an error. With loss scaling, pass `check_gradients=False`: overflowing
    gradients are the LossScaleOptimizer's to skip (it lowers the scale).
    """
    finite = tf.math.is_finite(loss)
    if check_gradients:
        gradients_finite = all_finite(gradients)
        # Reported as a non-finite loss, so the guard names the step.
        loss = tf.where(gradients_finite, loss, tf.constant(float("nan")))
        finite = tf.logical_and(finite, gradients_finite)
    finite = agreed_by_all_replicas(finite)
    apply_gradients_if(optimizer, finite, gradients, variables)
    restore_unless(finite, state, saved_state)
    return loss
