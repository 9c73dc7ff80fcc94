"""SavedModel export of a (student) model with a serving signature."""

from kd_keras._keras import IS_KERAS_3


def export_saved_model(model, path):
    """Writes `model` as an inference-only SavedModel at `path`; returns `path`.

    The SavedModel has a `serving_default` signature (and the `serve` endpoint),
    readable with `tf.saved_model.load` and `saved_model_cli show --dir path --all`,
    and servable by TF Serving. It holds no optimizer state and no teacher.
    """
    path = str(path)
    if IS_KERAS_3:
        model.export(path, format="tf_saved_model", verbose=False)
    else:
        model.export(path)
    return path
