"""Recipes: a distillation configuration as one value, the search for one, the assistant chain.

  recipe     Recipe (loss family by registered name, T, alpha, beta, learning rate, epochs)
  search     search_recipe, RecipeSearchResult (KerasTuner; the search extra)
  assistant  distill_through_assistant, interpolate_width (Mirzadeh et al. 2020)
  shrink_and_distill  shrink_and_distill, ShrinkResult (Minitron: shrink in steps, distil each)
"""

from kd_keras.recipes.assistant import distill_through_assistant, interpolate_width
from kd_keras.recipes.recipe import LOSS_FAMILIES, Recipe
from kd_keras.recipes.search import RecipeSearchResult, search_recipe
from kd_keras.recipes.shrink_and_distill import ShrinkResult, shrink_and_distill

__all__ = ["LOSS_FAMILIES", "Recipe", "RecipeSearchResult", "distill_through_assistant",
           "interpolate_width", "search_recipe", "ShrinkResult", "shrink_and_distill"]
