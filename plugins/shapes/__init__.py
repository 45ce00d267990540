"""The shapes world (docs/shapes.md): a tiny image–caption world whose captions a
program can verify, so the whole unCLIP stack can be trained on a CPU and scored without eyes.

Generator (:mod:`.world`, :mod:`.captions`), renderer (:mod:`.renderer`), checker
(:mod:`.checker`), figures (:mod:`.metrics`), evaluation prompts (:mod:`.prompts`) and a
torch dataset (:mod:`.dataset`). No plugin hook is registered here.
"""
from __future__ import annotations

from .captions import CaptionSpec, article, caption, parse_caption
from .checker import CheckResult, DetectedObject, check, detect_objects
from .dataset import ShapesDataset
from .images import as_rgb_float
from .metrics import diversity, score
from .prompts import PROMPT_GROUPS, all_prompts, prompt_set
from .renderer import render, render_array
from .world import (
    BACKGROUND,
    COLORS,
    HELD_OUT_PAIRS,
    PALETTE,
    RELATIONS,
    SHAPES,
    Scene,
    ShapeObject,
    relation_holds,
    place_objects,
    sample_scene,
)

__all__ = [
    "BACKGROUND",
    "COLORS",
    "HELD_OUT_PAIRS",
    "PALETTE",
    "PROMPT_GROUPS",
    "RELATIONS",
    "SHAPES",
    "CaptionSpec",
    "CheckResult",
    "DetectedObject",
    "Scene",
    "ShapeObject",
    "ShapesDataset",
    "all_prompts",
    "article",
    "as_rgb_float",
    "caption",
    "check",
    "detect_objects",
    "diversity",
    "parse_caption",
    "prompt_set",
    "relation_holds",
    "render",
    "render_array",
    "place_objects",
    "sample_scene",
    "score",
]
