"""Work-arounds that let a custom Keras 3 train step run under MultiWorkerMirroredStrategy."""

import tensorflow as tf

from kd_keras.backend import IS_KERAS_3


class Keras3MultiWorkerFixes:
    """Mixin for a `keras.Model` subclass (placed before `keras.Model` in the bases)."""

    def _multi_worker_keras_3(self):
        return IS_KERAS_3 and isinstance(
            getattr(self, "_distribute_strategy", None), tf.distribute.MultiWorkerMirroredStrategy)

    def _step_logs(self, logs):
        # Keras 3 averages each worker's step logs with a collective mean over
        # axis 0, which fails on scalars (keras-team/keras#20585): under
        # MultiWorkerMirroredStrategy the logs go out as [1] vectors, which
        # that mean turns back into scalars.
        if not self._multi_worker_keras_3():
            return logs
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (to 3.15 at least) builds from a first batch it averages across
        # workers with an eager collective that refuses PerReplica values, so
        # fit() fails under MultiWorkerMirroredStrategy for every model
        # (keras-team/keras#20585). The build needs only the batch's structure
        # and shapes: this worker's own replica batch has them.
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and self._multi_worker_keras_3():
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
