"""Built-in evaluations for ``unclip eval``: the shapes world's checker."""
from __future__ import annotations

from unclip_core import hookimpl

from .shapes import ShapesEvaluation, ShapesEvaluationConfig


@hookimpl
def register_evaluations(register):
    register("shapes", ShapesEvaluation, ShapesEvaluationConfig,
             summary="Shapes-world prompts judged by the pixel checker: exact/colour/shape/count/relation, seen vs held-out pairs, diversity.")


__all__ = ["ShapesEvaluation", "ShapesEvaluationConfig"]
