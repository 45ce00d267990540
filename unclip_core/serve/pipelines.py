"""The pipelines the server has built: one per (recipe, overrides), the recipes given at
start-up kept for good, others (a request's overrides, e.g. a guidance slider) in a small
least-recently-used cache so memory stays bounded however many settings clients try."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from unclip_core.errors import InputError
from unclip_core.pipeline import Pipeline

Key = tuple[str, tuple[str, ...]]


class PipelineCache:
    def __init__(self, recipes: Sequence[str], overrides: Sequence[str] = (), extra: int = 2):
        """``recipes``: the names or files served (the first is the default); each is built now,
        so a bad recipe stops ``unclip serve`` before it listens. ``overrides``: applied to every
        recipe, before a request's own. ``extra``: how many pipelines built with a request's
        overrides are kept."""
        from unclip_core.recipe.assemble import load_pipeline

        self._load = load_pipeline
        self.recipes = list(recipes)
        self.overrides = tuple(overrides)
        self.pinned: dict[Key, Pipeline] = {
            (recipe, self.overrides): load_pipeline(recipe, list(self.overrides)) for recipe in self.recipes
        }
        self.extra = extra
        self._recent: OrderedDict[Key, Pipeline] = OrderedDict()

    @property
    def default(self) -> Pipeline:
        return self.pinned[(self.recipes[0], self.overrides)]

    def key(self, recipe: str | None, overrides: Sequence[str]) -> Key:
        """The cache key of a request — its recipe and every override that applies, the server's
        first — or a one-line error for a recipe not served here."""
        recipe = self.recipes[0] if recipe is None else recipe
        if recipe not in self.recipes:
            raise InputError(f"recipe {recipe!r} is not served here; choose one of: {', '.join(self.recipes)}")
        return recipe, (*self.overrides, *overrides)

    def get(self, key: Key) -> Pipeline:
        """The pipeline for ``key``, built on first use (a bad override is the recipe's one-line error)."""
        if key in self.pinned:
            return self.pinned[key]
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key]
        pipeline = self._load(key[0], list(key[1]))
        self._recent[key] = pipeline
        while len(self._recent) > self.extra:
            self._recent.popitem(last=False)
        return pipeline
