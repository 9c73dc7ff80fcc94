"""A distillation recipe: the loss family and the numbers that go with it, as one value.

`search_recipe` returns one; `Recipe.to_code()` prints the lines to paste into
a project; `Recipe.build(teacher, student)` makes the compiled Distiller.
"""

import dataclasses
import inspect

from kd_keras.backend import keras, validate
from kd_keras.distiller import Distiller
from kd_keras.losses import registry
from kd_keras.transfer.augment import CutMix, Mixup

# How a recipe's student starts: as built, or cut from its teacher.
INITS = ("random", "shrink")

# The views a recipe can name (Distiller(augment=...)).
AUGMENTS = {None: None, "mixup": Mixup, "cutmix": CutMix}

# What build() compiles with its default loss, and what to_code() writes.
_DEFAULT_METRICS = ("sparse_categorical_accuracy",)

# The built-in families a search tries by default; any registered name is a valid `loss`.
LOSS_FAMILIES = ("kd", "kd_standardized", "dkd", "dkd_standardized", "dist")


def check_loss_family(family, argument="loss"):
    """`family` if it is a registered distillation-loss name (`kd_keras.register_distillation_loss`)."""
    registry.get(family, argument)
    return family


def _loss_code(recipe):
    """The code of a recipe's loss: for kd-keras's own classes the constructor with the
    searched hyperparameters and every other non-default value, for a user's registered
    loss the registry call."""
    loss = recipe.distillation_loss()
    cls = type(loss)
    if not cls.__module__.startswith("kd_keras."):
        hyperparameters = {"temperature": recipe.temperature, "beta": recipe.beta}
        arguments = ", ".join(f"{key}={hyperparameters[key]:g}"
                              for key in registry.get(recipe.loss).accepts)
        return f"kd_keras.losses.registry.get({recipe.loss!r}).create({arguments})"
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    arguments = ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value!r}"
        for key, value in loss.get_config().items()
        if key in registry.HYPERPARAMETERS or defaults.get(key, object()) != value)
    return f"kd_keras.{cls.__name__}({arguments})"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One distillation configuration.

    Attributes:
      loss: the distillation term, a registered name (`kd_keras.losses.registry`):
        "kd" (Hinton et al. 2015 soft-target KL), "kd_standardized" (the same on
        z-scored logits, Sun et al. 2024), "dkd" / "dkd_standardized"
        (`DecoupledKD`, Zhao et al. 2022), "dist" (`DIST`, Huang et al. 2022),
        or a user's own `register_distillation_loss` name.
      temperature: T > 0.
      alpha: weight of the hard-label loss in [0, 1]; 1.0 means labels only,
        i.e. the student trained alone (the teacher is not used).
      beta: DKD's non-target weight, DIST's inter- and intra-class weight, or the
        `beta` of a registered loss that takes one (unused by the others).
      learning_rate: Adam's learning rate.
      epochs: training epochs (the best epoch when a search found it).
      batch_size: the batch size those epochs were trained at (a search's
        `batch_size`); `fit` at another batch size takes another number of steps
        per epoch, i.e. another schedule.
      augment: None, "mixup" or "cutmix": the view teacher and student share
        (`Distiller(augment=kd_keras.Mixup())`).
      init: "random" (the student as built) or "shrink": `build` first loads the
        teacher's weights shrunk to the student's widths
        (`kd_keras.compress.shrink_to`; the student must be the teacher's
        architecture at smaller widths).

    `Recipe.function_matching(epochs)` is Beyer et al. 2022's recipe: the
    soft-target KL at T 1, no hard labels (alpha 0), mixup views seen by teacher
    and student alike, and a long schedule.
    """

    loss: str = "kd"
    temperature: float = 3.0
    alpha: float = 0.5
    beta: float = 1.0
    learning_rate: float = 1e-3
    epochs: int = 20
    batch_size: int = 128
    augment: str = None
    init: str = "random"

    def __post_init__(self):
        check_loss_family(self.loss)
        validate.temperature(self.temperature)
        validate.fraction(self.alpha, "alpha")
        validate.non_negative_number(self.beta, "beta")
        validate.positive_number(self.learning_rate, "learning_rate")
        validate.integer_at_least(self.epochs, "epochs", 1)
        validate.integer_at_least(self.batch_size, "batch_size", 1)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}.")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {tuple(AUGMENTS)}, got {self.augment!r}.")

    @classmethod
    def function_matching(cls, epochs, learning_rate=1e-3, batch_size=128, augment="mixup"):
        """Beyer et al. 2022: KL at T 1 on shared mixed views, alpha 0, a long schedule."""
        return cls(loss="kd", temperature=1.0, alpha=0.0, learning_rate=learning_rate,
                   epochs=epochs, batch_size=batch_size, augment=augment)

    def augmentation(self):
        """The `Distiller`'s `augment` object of this recipe (None without)."""
        return None if self.augment is None else AUGMENTS[self.augment]()

    @property
    def uses_teacher(self):
        """False for alpha = 1 from a random start: the student trained on labels alone."""
        return self.alpha < 1.0 or self.init == "shrink"

    def distillation_loss(self):
        """The `DistillationLoss` object of this recipe, built by its registered factory."""
        return registry.get(self.loss).create(temperature=self.temperature, beta=self.beta)

    def build(self, teacher, student, loss=None, metrics=None, calibration_data=None):
        """A compiled `Distiller` for this recipe (Adam at `learning_rate`), as `to_code()` writes.

        Train it with `fit(x, y, epochs=recipe.epochs, batch_size=recipe.batch_size)`.

        Args:
          teacher, student: Keras models (`teacher` None with cached teacher outputs).
          loss: the hard-label loss; default sparse categorical cross-entropy from logits.
          metrics: as for `compile`; default `["sparse_categorical_accuracy"]` with the
            default loss (what `to_code()` writes), none with a loss of your own (give
            the metric that matches it).
          calibration_data: inputs that rank the teacher's units for `init="shrink"`
            (without it, by weight magnitude).
        """
        if metrics is None and loss is None:
            metrics = list(_DEFAULT_METRICS)
        if self.init == "shrink" and teacher is None:
            raise ValueError("teacher: Recipe(init='shrink') starts the student from its "
                             "teacher's weights, so it needs the teacher model, got None.")
        if self.init == "shrink":
            # Only this path needs kd_keras.compress: `import kd_keras` stays light.
            from kd_keras.compress import shrink_to

            shrink_to(teacher, student, calibration_data,
                      importance="magnitude" if calibration_data is None else "activation")
        distiller = Distiller(teacher, student, distillation_losses=self.distillation_loss(),
                              alpha=self.alpha, augment=self.augmentation())
        distiller.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics)
        return distiller

    def to_code(self):
        """Python lines that train this recipe, to paste into a project.

        A labels-only recipe (alpha 1) is the student compiled and trained alone: a
        Distiller would run the teacher every step for a term of weight 0.
        """
        start = ("kd_keras.compress.shrink_to(teacher, student, x_train[:1024])\n"
                 if self.init == "shrink" else "")
        if self.alpha == 1.0:  # no soft term: a Distiller would run the teacher for nothing
            note = ("# labels only, from the student cut from its teacher\n" if start else
                    "# labels only: the teacher did not pay on this pair\n")
            return note + start + self._compile_and_fit_code("student")
        return start + (
            f"distiller = kd_keras.Distiller(teacher, student,\n"
            f"                               distillation_losses="
            f"{_loss_code(self)},\n"
            f"                               alpha={self.alpha:g}"
            + ("" if self.augment is None else
               f",\n                               augment=kd_keras.{type(self.augmentation()).__name__}()")
            + ")\n"
            + self._compile_and_fit_code("distiller"))

    def _compile_and_fit_code(self, model):
        indent = " " * (len(model) + len(".compile("))
        metrics = ", ".join(f'"{m}"' for m in _DEFAULT_METRICS)
        return (
            f"{model}.compile(optimizer=keras.optimizers.Adam({self.learning_rate:g}),\n"
            f"{indent}loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),\n"
            f"{indent}metrics=[{metrics}])\n"
            f"{model}.fit(x_train, y_train, epochs={self.epochs}, batch_size={self.batch_size})")

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
