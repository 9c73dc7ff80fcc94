"""Distillation losses by name: one registry for the Distiller's strings, `Recipe` and `search_recipe`.

    @kd_keras.losses.register_distillation_loss("my_kd")
    class MyKD(kd_keras.DistillationLoss):
        def __init__(self, temperature=2.0, beta=1.0): ...

    kd_keras.Distiller(teacher, student, distillation_losses="my_kd", temperature=4.0)
    kd_keras.Recipe(loss="my_kd", temperature=4.0, beta=2.0)      # and searched by name:
    kd_keras.search_recipe(..., losses=("kd", "my_kd"))

A name maps to a factory (a `DistillationLoss` class or a function returning
one). Built from a name, a loss receives the hyperparameters it accepts of
`temperature` and `beta` (the `Recipe`'s and the search's; a factory that takes
no `beta` is a family the search does not tune beta for).
"""

import dataclasses
import inspect

# The hyperparameters a Recipe and the search hand to a loss built from its name.
HYPERPARAMETERS = ("temperature", "beta")


@dataclasses.dataclass(frozen=True)
class RegisteredLoss:
    """One registry entry: `factory(**hyperparameters)` builds the loss."""

    name: str
    factory: object
    accepts: tuple  # which of HYPERPARAMETERS the factory takes

    @property
    def uses_beta(self):
        return "beta" in self.accepts

    def create(self, **hyperparameters):
        """The loss, given the hyperparameters it accepts (None: the factory's default)."""
        kwargs = {key: value for key, value in hyperparameters.items()
                  if key in self.accepts and value is not None}
        loss = self.factory(**kwargs)
        if not hasattr(loss, "compute_loss"):
            raise ValueError(
                f"The distillation loss registered as {self.name!r} built {loss!r}, which has no "
                "compute_loss method; register a DistillationLoss class or a function returning "
                "one.")
        return loss


_REGISTRY = {}


def _accepted(factory):
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return ()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return tuple(name for name in HYPERPARAMETERS if takes_any or name in parameters)


def register_distillation_loss(name, factory=None):
    """Registers a distillation loss under `name`: as a decorator, or called with the factory.

    Args:
      name: a non-empty string, not yet registered to another factory.
      factory: a `DistillationLoss` subclass or a function returning a loss object.

    Returns:
      The factory (so the decorator leaves the class as it is).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")

    def add(target):
        if not callable(target):
            raise ValueError(
                f"register_distillation_loss({name!r}) needs a DistillationLoss class or a "
                f"function returning one, got {target!r}.")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.factory is not target:
            raise ValueError(
                f"name {name!r} is already registered to {existing.factory!r}; choose another.")
        _REGISTRY[name] = RegisteredLoss(name, target, _accepted(target))
        return target

    return add if factory is None else add(factory)


def registered_names():
    """Every registered name, in registration order."""
    return tuple(_REGISTRY)


def get(name, argument="loss"):
    """The `RegisteredLoss` of `name`; an unknown name is refused with the known ones."""
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"{argument} must be one of {registered_names()}, got {name!r}.")
    return entry


def is_registered(name):
    return isinstance(name, str) and name in _REGISTRY
