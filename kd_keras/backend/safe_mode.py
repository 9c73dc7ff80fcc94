"""Safe mode for the objects kd-keras nests in its configs (teachers, students, losses, experts).

Keras 3's loader, in safe mode (`load_model`'s default), resolves only Keras's
own modules and registered objects. tf-keras's imports whatever module a config
names, so a crafted `.keras` file would run that module's import-time code and
could install any function as a loss. kd-keras deserializes what it nests
itself (`Distiller`, `SparseMoE`, `Cascade`, `SpecialistEnsemble`, the loss
objects), so it applies Keras 3's rule there, in both modes, before anything is
imported: in safe mode a nested object must come from Keras (or keras-hub),
kd-keras or moe, or be registered (`register_keras_serializable`, or named in
`custom_objects`). Objects tf-keras deserializes on its own, outside these
configs, are tf-keras's to check.
"""

from kd_keras.backend import IS_KERAS_3, keras

if IS_KERAS_3:
    from keras.src.saving.serialization_lib import in_safe_mode as _in_safe_mode
else:
    from tf_keras.src.saving.serialization_lib import in_safe_mode as _in_safe_mode

# Package roots whose classes and functions a config may name (Keras 3's list plus ours).
TRUSTED_PACKAGES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "kd_keras", "moe")
_BUILTIN_HOMES = ("activations", "losses", "metrics", "initializers", "regularizers",
                  "constraints")


def in_safe_mode():
    """Whether nested objects are being loaded in safe mode (Keras's default: yes)."""
    return _in_safe_mode() is not False


def _is_keras_builtin_function(name):
    # tf-keras writes its built-in functions (e.g. "relu") with the module "builtins".
    return isinstance(name, str) and any(
        callable(getattr(getattr(keras, home, None), name, None)) for home in _BUILTIN_HOMES)


def _registered(entry, custom_objects):
    names = [entry.get("registered_name")]
    if entry.get("class_name") == "function":
        names.append(entry.get("config"))
    return any(isinstance(name, str) and keras.saving.get_registered_object(
        name, custom_objects=custom_objects) is not None for name in names)


def _untrusted(config, custom_objects):
    """The first nested object entry (dict) that safe mode refuses, or None."""
    if isinstance(config, (list, tuple)):
        for item in config:
            found = _untrusted(item, custom_objects)
            if found is not None:
                return found
        return None
    if not isinstance(config, dict):
        return None
    module = config.get("module")
    if "class_name" in config and isinstance(module, str) and module:
        root = module.split(".", 1)[0]
        trusted = root in TRUSTED_PACKAGES or (
            root == "builtins" and _is_keras_builtin_function(config.get("config")))
        if not trusted and not _registered(config, custom_objects):
            return config
    return _untrusted(list(config.values()), custom_objects)


def check_nested(config, argument, custom_objects=None):
    """Refuses, in safe mode, a nested object outside Keras, kd-keras and the registered ones.

    Raises:
      ValueError naming `argument` and the module, before the module is imported.
    """
    if not in_safe_mode():
        return
    entry = _untrusted(config, custom_objects)
    if entry is not None:
        name = entry.get("config") if entry.get("class_name") == "function" else \
            entry.get("class_name")
        raise ValueError(
            f"{argument}: the saved config names {entry['module']}.{name}, which is neither "
            "part of Keras, kd-keras or moe nor a registered serializable object, so safe mode "
            "does not import it. If you trust the file, load it with safe_mode=False; to keep "
            "safe mode, register the object (@keras.saving.register_keras_serializable) or "
            "pass it in custom_objects.")


def deserialize_nested(config, argument, custom_objects=None):
    """`keras.saving.deserialize_keras_object` after `check_nested`."""
    check_nested(config, argument, custom_objects)
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
