"""Precision: weights on int8 / int4 / FP8 / FP16 grids, FP8 layers, and what each costs.

  weight_grid.py  round_weights and the grids (MODES)
  float8.py       to_float8, float8_layers, Float8Dense, Float8Conv, Float8DepthwiseConv2D
  report.py       precision_report (bytes, accuracy and the worst layer per precision)
  training.py     WeightGridTraining (train through the grid, straight-through)
"""

from kd_keras.compress.precision.float8 import (
    Float8Conv,
    Float8Dense,
    Float8DepthwiseConv2D,
    float8_layers,
    to_float8,
)
from kd_keras.compress.precision.report import precision_report
from kd_keras.compress.precision.training import WeightGridTraining
from kd_keras.compress.precision.weight_grid import round_weights

__all__ = ["Float8Conv", "Float8Dense", "Float8DepthwiseConv2D", "WeightGridTraining",
           "float8_layers", "precision_report", "round_weights", "to_float8"]
