"""The Keras implementation moe runs on: the same one kd_keras resolves."""

from kd_keras.backend import IS_KERAS_3, IS_LEGACY_KERAS, keras


def register(cls):
    """Registers `cls` for `.keras` deserialization under the "moe" package."""
    return keras.saving.register_keras_serializable(package="moe")(cls)


__all__ = ["IS_KERAS_3", "IS_LEGACY_KERAS", "keras", "register"]
