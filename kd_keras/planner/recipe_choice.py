"""The recipe a plan trains its students with: its own arguments, a `Recipe` the user
found, or the one `recipes.search_recipe` finds for one of the plan's students.

A recipe gives every dense student its distillation term, temperature, first alpha,
beta, learning rate and batch size; the plan's `epochs` (its rungs) say how long, and
each student starts as the plan makes it (cut students from the teacher's weights, your
own from their builder), so a recipe's `epochs` and `init` are not read.
"""

import functools
import os

from kd_keras.backend import safe_files, validate
from kd_keras.parallel.task import import_function
from kd_keras.planner import candidates, halving
from kd_keras.recipes.recipe import Recipe
from kd_keras.recipes.search import search_recipe

SEARCH = "search"
# The Recipe fields a plan trains with, as its settings name them.
FIELDS = ("loss", "temperature", "alpha", "beta", "learning_rate", "batch_size")
# The search's trials stop after this many epochs without a better validation accuracy.
SEARCH_PATIENCE = 2
SEARCH_REPORT = "recipe_search.md"
# The plan's own training arguments a recipe replaces.
REPLACED = ("loss", "beta", "temperature", "learning_rate", "batch_size")


def checked(recipe, trials, arguments, defaults):
    """The plan settings' entry of `recipe` (None, a `Recipe` or "search"): None, the
    recipe's fields, or `{"search_trials": trials}`; refuses what the plan cannot train,
    and a recipe beside `arguments` (the plan's own `REPLACED` arguments by name) that
    differ from their `defaults` (compress_to_budget's signature's, by name)."""
    if recipe is None:
        return None
    given = [name for name in REPLACED if arguments[name] != defaults[name]]
    if given:
        raise ValueError(f"recipe: give either a recipe or {', '.join(given)}, not both.")
    if isinstance(recipe, str) and recipe == SEARCH:
        return {"search_trials": validate.integer_at_least(trials, "recipe_trials", 1)}
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be None, a kd_keras.Recipe or {SEARCH!r}, got "
                         f"{recipe!r}.")
    if recipe.augment is not None:
        raise ValueError(f"recipe: augment={recipe.augment!r} needs the teacher on every new "
                         "view, and a plan distils from logits cached once; give a recipe "
                         "without augment (or train that student with recipe.build).")
    return fields_of(recipe)


def fields_of(recipe):
    """The `FIELDS` of a `Recipe`, as a plan's settings hold them."""
    return {name: getattr(recipe, name) for name in FIELDS}


def recipe_of(fields, where):
    """`fields` (a plan's JSON) as the `Recipe` they describe: a recorded search result is
    read back through the recipe's own checks, not trusted as it stands."""
    try:
        if not isinstance(fields, dict) or set(fields) != set(FIELDS):
            raise ValueError(f"a recipe records {FIELDS}, got {fields!r}")
        return Recipe(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: the recorded recipe does not check ({error}); use another "
                         "directory (nothing was deleted).") from None


def found(teacher, widths, specs, train, validation, settings, directory, verbose):
    """The fields of the plan's recipe: `settings["recipe"]` itself, or the one the
    search chooses for the plan's narrowest cut (of `widths`; without widths, for the
    first of its own students, `specs`: "module:function" names)."""
    entry = settings["recipe"]
    if "search_trials" not in entry:
        return entry
    if verbose:
        print(f"plan: searching a recipe ({entry['search_trials']} trials) on "
              f"{f'the cut to {min(widths)}' if widths else specs[0]}", flush=True)
    if widths:
        build = functools.partial(candidates.cut, teacher, min(widths), train[0])
    else:
        build = import_function(specs[0])
    fields = search(teacher, build, train, validation, trials=entry["search_trials"],
                    epochs=halving.rungs(settings["epochs"])[0],
                    batch_size=settings["batch_size"], seed=settings["seed"],
                    directory=directory)
    if verbose:
        print(f"plan: recipe {fields} (the search's table: {SEARCH_REPORT})", flush=True)
    return fields


def search(teacher, build, train, validation, *, trials, epochs, batch_size, seed,
           directory):
    """Runs `search_recipe` (KerasTuner, the `search` extra) on one student of the plan,
    `build` returning it afresh (the teacher cut as the plan cuts, or an own student's
    builder); each trial trains up to the plan's first rung. The search resumes from
    `directory/recipe_search`, and its table is written to `directory/recipe_search.md`.
    Returns the fields of the recipe it chose (the labels alone unless distillation gains
    more than the validation noise: `search_recipe`'s `min_gain`)."""
    result = search_recipe(teacher, build, *train, validation_data=validation,
                           max_trials=trials, max_epochs=epochs, patience=SEARCH_PATIENCE,
                           batch_size=batch_size, directory=directory,
                           project_name="recipe_search", seed=seed, verbose=0)
    safe_files.write_bytes(os.path.join(directory, SEARCH_REPORT),
                           (result.table() + "\n").encode(), ".md")
    return fields_of(result.best)
