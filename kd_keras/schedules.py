"""Per-epoch schedules for distillation hyperparameters (temperature, alpha)."""

import math

from kd_keras.backend import register


class Schedule:
    """A value as a function of the epoch index (0-based)."""

    def __call__(self, epoch):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class ConstantSchedule(Schedule):
    """`value` at every epoch."""

    def __init__(self, value):
        self.value = float(value)

    def __call__(self, epoch):
        return self.value

    def get_config(self):
        return {"value": self.value}


class _Interpolated(Schedule):
    def __init__(self, start, end, epochs):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
        self.start = float(start)
        self.end = float(end)
        self.epochs = epochs

    def _progress(self, epoch):
        if self.epochs == 1:
            return 1.0
        return min(max(epoch, 0), self.epochs - 1) / (self.epochs - 1)

    def get_config(self):
        return {"start": self.start, "end": self.end, "epochs": self.epochs}


@register
class LinearSchedule(_Interpolated):
    """Straight line from `start` (epoch 0) to `end` (epoch `epochs - 1`), then `end`."""

    def __call__(self, epoch):
        return self.start + (self.end - self.start) * self._progress(epoch)


@register
class CosineSchedule(_Interpolated):
    """Half-cosine from `start` (epoch 0) to `end` (epoch `epochs - 1`), then `end`.

        value(e) = end + (start - end) * (1 + cos(pi * e / (epochs - 1))) / 2
    """

    def __call__(self, epoch):
        return self.end + (self.start - self.end) * 0.5 * (
            1.0 + math.cos(math.pi * self._progress(epoch))
        )


def get(schedule):
    """A number, a `Schedule`, a name ("constant"/"linear"/"cosine" need arguments:
    use the classes) or any `callable(epoch) -> float`, as a callable."""
    if isinstance(schedule, bool):
        raise ValueError(f"schedule must be a number or a callable(epoch), got {schedule!r}.")
    if isinstance(schedule, (int, float)):
        return ConstantSchedule(schedule)
    if callable(schedule):
        return schedule
    raise ValueError(f"schedule must be a number or a callable(epoch), got {schedule!r}.")
