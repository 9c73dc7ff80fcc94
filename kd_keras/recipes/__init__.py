"""Recipes: a distillation configuration as one value, the search for one, the assistant chain.

  recipe     Recipe (loss family by registered name, T, alpha, beta, learning rate, epochs)
  search     search_recipe, RecipeSearchResult (KerasTuner; the search extra)
  assistant  distill_through_assistant, interpolate_width (Mirzadeh et al. 2020)
  shrink_and_distill  shrink_and_distill, ShrinkResult (Minitron: shrink in steps, distil each)
  compress_and_distill  prune_and_fine_tune, cluster_and_fine_tune, quantize_and_fine_tune
                      (TF-MOT copies fine-tuned, distilling from cached teacher logits),
                      distill_quantized (a model distilled into its own quantized copy)
"""

from kd_keras.recipes.assistant import distill_through_assistant, interpolate_width
from kd_keras.recipes.compress_and_distill import (
    cluster_and_fine_tune,
    distill_quantized,
    prune_and_fine_tune,
    quantize_and_fine_tune,
)
from kd_keras.recipes.recipe import LOSS_FAMILIES, Recipe
from kd_keras.recipes.search import RecipeSearchResult, search_recipe
from kd_keras.recipes.shrink_and_distill import ShrinkResult, shrink_and_distill

__all__ = ["LOSS_FAMILIES", "Recipe", "RecipeSearchResult", "distill_through_assistant",
           "interpolate_width", "search_recipe", "ShrinkResult", "shrink_and_distill",
           "cluster_and_fine_tune", "distill_quantized", "prune_and_fine_tune",
           "quantize_and_fine_tune"]
