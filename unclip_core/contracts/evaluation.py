"""The evaluation's contract: a fixed, non-empty prompt set and a JSON-serialisable report."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from PIL import Image

from unclip_core.contracts._support import _require
from unclip_core.evaluation import EvalCase, EvalSamples


def check_evaluation(evaluation: Any) -> None:
    """The default prompt set is non-empty, fixed, and made of :class:`EvalCase` with at least
    one sample each; the report of blank images is a JSON-serialisable mapping."""
    label = f"evaluation {type(evaluation).__name__}"
    cases = evaluation.cases()
    _require(isinstance(cases, list) and len(cases) > 0, label, "cases() must return a non-empty list")
    _require(all(isinstance(c, EvalCase) and c.samples >= 1 for c in cases), label, "cases must be EvalCase with samples >= 1")
    _require(cases == evaluation.cases(), label, "cases() differs when called twice")
    _require(evaluation.cases([c.prompt for c in cases[:1]])[0].prompt == cases[0].prompt, label, "cases(prompts) must keep the prompts given")
    blank = [EvalSamples(c, [Image.new("RGB", (32, 32), (128, 128, 128))] * c.samples) for c in cases]
    report = evaluation.report(blank)
    _require(isinstance(report, Mapping), label, f"report() must return a mapping, got {type(report).__name__}")
    try:
        json.dumps(report)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: its report is not JSON-serialisable: {exc}") from None
