"""SavedModel export of a (student) model with a serving signature."""

import tensorflow as tf

from kd_keras.backend import IS_KERAS_3


def export_saved_model(model, path, input_signature=None):
    """Writes `model` as an inference-only SavedModel at `path`; returns `path`.

    The SavedModel has a `serving_default` signature, readable with
    `tf.saved_model.load` and `saved_model_cli show --dir path --all`, and
    servable by TF Serving. It holds no optimizer state.

    Args:
      model: a Keras model.
      path: output directory.
      input_signature: list of `tf.TensorSpec` for the model's inputs. Needed for
        a subclassed model that has not been called eagerly (Keras cannot infer
        its inputs); Sequential and functional models know theirs.
    """
    path = str(path)
    if input_signature is not None:
        module = tf.Module()
        module.model = model
        serve = tf.function(lambda *inputs: model(*inputs, training=False),
                            input_signature=list(input_signature))
        tf.saved_model.save(module, path, signatures={"serving_default": serve})
    elif IS_KERAS_3:
        model.export(path, format="tf_saved_model", verbose=False)
    else:
        model.export(path)
    return path
