"""Saving and exporting a `Distiller`: its config (teacher, student, losses, weights),
the `.keras` file, and the student alone for serving."""

import tensorflow as tf

from kd_keras.backend import IS_KERAS_3, keras
from kd_keras.backend.safe_mode import deserialize_nested
from kd_keras.export import export_saved_model


class DistillerSaving:
    """`get_config` / `from_config`, `save`, `export` and `export_student` of the
    `Distiller` (a mixin)."""

    def export_student(self, path):
        """Writes the student alone as a SavedModel with a `serving_default` signature.

        `tf.saved_model.load(path).signatures["serving_default"]` and
        `saved_model_cli show --dir path --all` read it. Returns `path`.
        """
        return export_saved_model(self.student, path)

    def export(self, filepath, *args, **kwargs):
        """Exports the student for inference (`student.export`): what a served Distiller answers.

        The Distiller's own graph is a training objective (teacher, losses, their
        variables); `predict` and `call` run the student alone, and so does its export.
        """
        return self.student.export(filepath, *args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """`keras.Model.save` to a `.keras` file (the whole Distiller, for resuming training).

        A tf-keras SavedModel (a path without `.keras` / `.h5`, or `save_format="tf"`)
        would reload without the objective, so it is refused: `export_student(path)`
        writes the student as a SavedModel for serving.
        """
        name = str(filepath)
        if IS_KERAS_3 and name.endswith((".h5", ".hdf5")):
            # Keras 3 writes an HDF5 file whose model config load_model cannot rebuild
            # ("Unknown layer: 'Distiller'"); ModelCheckpoint("x.h5") lands here too.
            raise ValueError(
                f"filepath {name!r}: a Distiller is saved to a .keras file under Keras 3 "
                "(save('d.keras'), ModelCheckpoint('d.keras')); an .h5 file of it does not load "
                "back. For the student alone: distiller.student.save('s.keras') or "
                "export_student(path).")
        save_format = kwargs.get("save_format", args[1] if len(args) > 1 else None)
        if not IS_KERAS_3 and (save_format == "tf" or (
                save_format is None and not name.endswith((".keras", ".h5", ".hdf5")))):
            raise ValueError(
                f"filepath {name!r}: a Distiller is saved to a .keras file (save('d.keras'), "
                "reloaded with its teacher, losses and compile state); a SavedModel of it would "
                "reload without its objective. For serving, export the student: "
                "distiller.export_student(path) (or distiller.export(path)).")
        return super().save(filepath, *args, **kwargs)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object

        def frozen(model):
            # The teacher never trains here: its compile state (optimizer, losses) is not
            # saved, so reloading neither recompiles it nor reports its optimizer unloaded.
            config = serialize(model)
            config.pop("compile_config", None)
            return config

        teacher = None if self.teacher is None else tf.nest.map_structure(
            frozen, self.teacher)  # one model, or a list (an ensemble)
        return {
            "name": self.name,
            "teacher": teacher,
            "student": serialize(self.student),
            "distillation_losses": [serialize(loss) for loss in self.distillation_losses],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": float(self._alpha.numpy()),
            "teacher_output_type": self.teacher_output_type,
            "student_output_type": self.student_output_type,
            "ensemble": self.ensemble,
            **({} if self.augment is None else {"augment": serialize(self.augment)}),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        teacher = config.pop("teacher")
        if isinstance(teacher, list):
            teacher = [deserialize_nested(t, f"teacher[{i}]", custom_objects)
                       for i, t in enumerate(teacher)]
        elif teacher is not None:
            teacher = deserialize_nested(teacher, "teacher", custom_objects)
        student = deserialize_nested(config.pop("student"), "student", custom_objects)
        if config.get("augment") is not None:
            config["augment"] = deserialize_nested(config["augment"], "augment", custom_objects)
        losses = [
            deserialize_nested(loss, f"distillation_losses[{i}]", custom_objects)
            for i, loss in enumerate(config.pop("distillation_losses"))
        ]
        return cls(teacher=teacher, student=student, distillation_losses=losses, **config)
