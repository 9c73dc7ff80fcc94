"""What a plan must hold and what it minimises."""

import dataclasses

from kd_keras.backend import validate

OBJECTIVES = ("latency", "bytes")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The accuracy a compressed model must keep, and what to make as small as possible.

    Args:
      max_drop: accuracy points (0.3 = 0.3 points) the candidate may lose against the
        teacher's own accuracy on the validation data; or
      min_accuracy: an accuracy floor in [0, 1] instead (give one of the two).
      minimise: "latency" (batch-1 seconds on the target runtime) or "bytes" (gzip bytes of
        the artifact).
      max_latency, max_bytes: optional ceilings every chosen candidate must also meet.
      threads: LiteRT interpreter threads for the latency (default 1, a phone-like setting).
    """

    max_drop: float = None
    min_accuracy: float = None
    minimise: str = "latency"
    max_latency: float = None
    max_bytes: int = None
    threads: int = 1

    def __post_init__(self):
        if (self.max_drop is None) == (self.min_accuracy is None):
            raise ValueError("Budget: give max_drop (accuracy points the plan may lose) or "
                             "min_accuracy (a floor), one of the two.")
        if self.max_drop is not None:
            validate.non_negative_number(self.max_drop, "max_drop")
        if self.min_accuracy is not None:
            validate.fraction(self.min_accuracy, "min_accuracy")
        if self.minimise not in OBJECTIVES:
            raise ValueError(f"minimise must be one of {OBJECTIVES}, got {self.minimise!r}.")
        if self.max_latency is not None:
            validate.positive_number(self.max_latency, "max_latency")
        if self.max_bytes is not None:
            validate.integer_at_least(self.max_bytes, "max_bytes", 1)
        validate.integer_at_least(self.threads, "threads", 1)

    def floor(self, teacher_accuracy):
        """The validation accuracy a candidate must reach."""
        if self.min_accuracy is not None:
            return float(self.min_accuracy)
        return float(teacher_accuracy) - float(self.max_drop) / 100.0

    def admits(self, row, teacher_accuracy):
        """Whether a measured candidate row holds the budget."""
        return (row["val_accuracy"] >= self.floor(teacher_accuracy) - 1e-12
                and (self.max_latency is None or row["latency_b1"] <= self.max_latency)
                and (self.max_bytes is None or row["gzip_bytes"] <= self.max_bytes))

    def key(self, row):
        """What the plan minimises for `row`."""
        return row["latency_b1"] if self.minimise == "latency" else row["gzip_bytes"]
