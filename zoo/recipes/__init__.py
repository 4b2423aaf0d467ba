"""Recipes: typed, validated compression schedules and the manager that applies them.

from zoo.recipes import RecipeManager, oneshot, load_recipe
"""

from zoo.recipes.manager import RecipeManager, as_recipe, oneshot
from zoo.recipes.parse import dump_recipe, load_recipe, parse_recipe
from zoo.recipes.schema import Recipe, Stage
from zoo.recipes.validate import check_model

__all__ = [
    "Recipe",
    "RecipeManager",
    "Stage",
    "as_recipe",
    "check_model",
    "dump_recipe",
    "load_recipe",
    "oneshot",
    "parse_recipe",
]
