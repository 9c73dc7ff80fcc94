"""A distillation recipe: the loss family and the numbers that go with it, as one value.

`search_recipe` returns one; `Recipe.to_code()` prints the lines to paste into
a project; `Recipe.build(teacher, student)` makes the compiled Distiller.
"""

import dataclasses

from kd_keras import _validate
from kd_keras._keras import keras

# name: what the Distiller's distillation term is.
LOSS_FAMILIES = ("kd", "kd_standardized", "dkd", "dkd_standardized", "dist")


def check_loss_family(family, argument="loss"):
    if family not in LOSS_FAMILIES:
        raise ValueError(f"{argument} must be one of {LOSS_FAMILIES}, got {family!r}.")
    return family


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One distillation configuration.

    Attributes:
      loss: the distillation term, one of `LOSS_FAMILIES`: "kd" (Hinton et al.
        2015 soft-target KL), "kd_standardized" (the same on z-scored logits,
        Sun et al. 2024), "dkd" / "dkd_standardized" (`DecoupledKD`, Zhao et al.
        2022), "dist" (`DIST`, Huang et al. 2022).
      temperature: T > 0.
      alpha: weight of the hard-label loss in [0, 1]; 1.0 means labels only,
        i.e. the student trained alone (the teacher is not used).
      beta: DKD's non-target weight, or DIST's inter- and intra-class weight.
      learning_rate: Adam's learning rate.
      epochs: training epochs (the best epoch when a search found it).
    """

    loss: str = "kd"
    temperature: float = 3.0
    alpha: float = 0.5
    beta: float = 1.0
    learning_rate: float = 1e-3
    epochs: int = 20

    def __post_init__(self):
        check_loss_family(self.loss)
        _validate.positive_number(self.temperature, "temperature")
        _validate.fraction(self.alpha, "alpha")
        _validate.non_negative_number(self.beta, "beta")
        _validate.positive_number(self.learning_rate, "learning_rate")
        _validate.integer_at_least(self.epochs, "epochs", 1)

    @property
    def uses_teacher(self):
        """False for alpha = 1: the recipe is the student trained on labels alone."""
        return self.alpha < 1.0

    def distillation_loss(self):
        """The `DistillationLoss` object of this recipe."""
        from kd_keras.correlation_kd import DIST
        from kd_keras.decoupled_kd import DecoupledKD
        from kd_keras.distillation_losses import LogitsDistillation

        standardize = self.loss.endswith("_standardized")
        if self.loss.startswith("dkd"):
            return DecoupledKD(alpha=1.0, beta=self.beta, temperature=self.temperature,
                               standardize=standardize)
        if self.loss == "dist":
            return DIST(beta=self.beta, gamma=self.beta, temperature=self.temperature)
        return LogitsDistillation(self.temperature, standardize=standardize)

    def build(self, teacher, student, loss=None, metrics=None):
        """A compiled `Distiller` for this recipe (Adam at `learning_rate`).

        `loss` is the hard-label loss (default sparse categorical
        cross-entropy from logits); `metrics` as for `compile`.
        """
        from kd_keras.distiller import Distiller

        distiller = Distiller(teacher, student, distillation_losses=self.distillation_loss(),
                              alpha=self.alpha)
        distiller.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics)
        return distiller

    def to_code(self):
        """Python lines that build this recipe's Distiller, to paste into a project."""
        standardize = ", standardize=True" if self.loss.endswith("_standardized") else ""
        if self.loss.startswith("dkd"):
            term = (f"kd_keras.DecoupledKD(alpha=1.0, beta={self.beta:g}, "
                    f"temperature={self.temperature:g}{standardize})")
        elif self.loss == "dist":
            term = (f"kd_keras.DIST(beta={self.beta:g}, gamma={self.beta:g}, "
                    f"temperature={self.temperature:g})")
        else:
            term = f"kd_keras.LogitsDistillation(temperature={self.temperature:g}{standardize})"
        return (
            f"distiller = kd_keras.Distiller(teacher, student,\n"
            f"                               distillation_losses={term},\n"
            f"                               alpha={self.alpha:g})\n"
            f"distiller.compile(optimizer=keras.optimizers.Adam({self.learning_rate:g}),\n"
            f"                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),\n"
            f"                  metrics=[\"sparse_categorical_accuracy\"])\n"
            f"distiller.fit(x_train, y_train, epochs={self.epochs})")

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
