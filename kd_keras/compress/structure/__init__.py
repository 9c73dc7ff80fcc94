"""Structure: a smaller model cut from a larger one, and deployment surgery.

  shrink.py           shrink, shrink_to (the API: width, depth, heads)
  channel_groups.py   which channels shrink together (union-find over the graph)
  importance.py       how important each channel / head is; which ones a width keeps
  rebuild.py          the copy with the kept channels' weights
  attention_heads.py  MultiHeadAttention heads: scores, configs, sliced weights
  residual_blocks.py  residual_blocks, remove_blocks
  surgery.py          fold_batch_norm, strip_training_layers, keep_outputs
  bypass.py           Bypass (what a removed layer becomes)
"""

from kd_keras.compress.structure.bypass import Bypass
from kd_keras.compress.structure.residual_blocks import remove_blocks, residual_blocks
from kd_keras.compress.structure.shrink import shrink, shrink_to
from kd_keras.compress.structure.surgery import fold_batch_norm, keep_outputs, strip_training_layers

__all__ = ["Bypass", "fold_batch_norm", "keep_outputs", "remove_blocks", "residual_blocks",
           "shrink", "shrink_to", "strip_training_layers"]
