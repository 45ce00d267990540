"""``unclip eval shapes``: generate the shapes world's prompt sets and read the images back.

Groups split what the issue asks to see apart: one- and two-object captions, each with only
colour–shape pairs seen in training or with at least one held-out pair (docs/shapes.md). Accuracy
is judged on the first image of every prompt, so each prompt weighs the same; a spread of
prompts gets extra samples for the diversity figure (mean pairwise RMS distance).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from unclip_core.errors import InputError
from unclip_core.evaluation import EvalCase, EvalSamples, Evaluation
from unclip_core.interfaces import ComponentConfig
from unclip_plugins.shapes import HELD_OUT_PAIRS, check, diversity, parse_caption, prompt_set, score

GROUPS: tuple[str, ...] = ("seen_one", "seen_two", "heldout_one", "heldout_two")


class ShapesEvaluationConfig(ComponentConfig):
    """How many prompts, which ones, and how diversity is sampled."""

    prompts_per_group: int = Field(
        70, ge=1, le=10_000, description="Prompts drawn for each of seen one-object, seen two-object and held-out captions (the held-out set mixes one and two objects 40/60)."
    )
    prompt_seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the prompt draw (same seed, same prompts).")
    diversity_prompts: int = Field(8, ge=0, le=10_000, description="Prompts, spread over the set, that get extra samples for diversity (0: none).")
    diversity_samples: int = Field(4, ge=2, le=256, description="Images generated for each diversity prompt.")
    failures_listed: int = Field(10, ge=0, description="Failed prompts listed in the report, with what the checker saw.")


class InvalidPrompt(InputError):
    """A prompt the checker cannot judge; ``index`` is its position in the list given."""

    def __init__(self, index: int, detail: str):
        super().__init__(f"prompt {index + 1}: {detail}")
        self.index = index
        self.detail = detail


def group_of(prompt: str) -> str:
    """``seen_one`` … ``heldout_two`` for a caption of the shapes grammar."""
    spec = parse_caption(prompt)
    held = any(pair in HELD_OUT_PAIRS for pair in spec.objects)
    return f"{'heldout' if held else 'seen'}_{'one' if len(spec.objects) == 1 else 'two'}"


class ShapesEvaluation(Evaluation[ShapesEvaluationConfig]):
    """The shapes world's prompt sets, judged by :func:`unclip_plugins.shapes.check`."""

    def cases(self, prompts: Sequence[str] | None = None) -> list[EvalCase]:
        if prompts is None:
            c = self.config
            prompts = [p for g in ("seen_one", "seen_two", "heldout") for p in prompt_set(g, c.prompts_per_group, c.prompt_seed)]
        groups = []
        for index, prompt in enumerate(prompts):
            try:
                groups.append(group_of(prompt))
            except InputError as exc:
                raise InvalidPrompt(index, str(exc)) from None
        k = min(self.config.diversity_prompts, len(prompts))
        spread = set(np.linspace(0, len(prompts) - 1, k).round().astype(int).tolist()) if k else set()
        return [
            EvalCase(prompt, group, self.config.diversity_samples if i in spread else 1)
            for i, (prompt, group) in enumerate(zip(prompts, groups))
        ]

    def report(self, samples: Sequence[EvalSamples]) -> dict[str, Any]:
        judged = [(s, check(s.images[0], s.case.prompt)) for s in samples]
        groups: dict[str, Any] = {}
        for group in GROUPS:
            results = [r for s, r in judged if s.case.group == group]
            if results:
                groups[group] = score(results)
        spreads = [diversity(s.images) for s in samples if len(s.images) > 1]
        failures = [
            {"prompt": s.case.prompt, "group": s.case.group, "saw": [f"{o.color} {o.shape}" for o in r.objects]}
            for s, r in judged
            if not r.exact
        ]
        return {
            "evaluation": "shapes",
            "overall": score([r for _, r in judged]),
            "groups": groups,
            "diversity": float(np.mean(spreads)) if spreads else None,
            "diversity_prompts": len(spreads),
            "failures": failures[: self.config.failures_listed],
            "failed": len(failures),
        }
