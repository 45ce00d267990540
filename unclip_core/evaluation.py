"""Scoring a pipeline by program: a prompt set, generated images, a judge.

An :class:`Evaluation` is a component (kind ``evaluation``, hook ``register_evaluations``)
that knows a prompt set and how to judge images against their prompts — the shapes world's
checker is the built-in one. :func:`run_evaluation` is the part every evaluation shares:
it generates the images in batches with a fixed seed per batch (so a run is reproducible
and independent of the batch size only through the seeds it records), then hands them to
the evaluation's :meth:`Evaluation.report`.

Why a registry kind rather than a function in the core: the core never imports a plugin,
and an evaluation is as world-specific as a dataset; a plugin that ships a new world ships
its judge the same way.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PIL import Image

from unclip_core.errors import InputError
from unclip_core.interfaces import ComponentConfig

ConfigT = TypeVar("ConfigT", bound=ComponentConfig)


@dataclass(frozen=True)
class EvalCase:
    """One prompt of an evaluation, the group whose figures it counts towards, and how many
    images to generate for it (more than one lets a report measure diversity)."""

    prompt: str
    group: str
    samples: int = 1


@dataclass
class EvalSamples:
    """The images generated for one case (``len(images) >= 1``)."""

    case: EvalCase
    images: list[Image.Image]


class Evaluation(abc.ABC, Generic[ConfigT]):
    """A prompt set plus a judge. Subclasses set their config model's settings."""

    kind = "evaluation"

    def __init__(self, config: ConfigT):
        self.config = config

    @abc.abstractmethod
    def cases(self, prompts: Sequence[str] | None = None) -> list[EvalCase]:
        """The default prompt set (``prompts is None``) or the given prompts, each placed in
        its group; an :class:`InputError` names any prompt this evaluation cannot judge."""

    @abc.abstractmethod
    def report(self, samples: Sequence[EvalSamples]) -> dict[str, Any]:
        """Figures for the generated ``samples`` (JSON-serialisable)."""


Generate = Callable[[list[str], int, int], list[Image.Image]]
"""``generate(prompts, n, seed)`` → ``n`` images per prompt, prompt-major (Pipeline.generate)."""


def run_evaluation(
    generate: Generate,
    evaluation: Evaluation,
    prompts: Sequence[str] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 32,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Generate every case's images and return ``evaluation.report(...)`` plus run details.

    Cases are generated in batches of at most ``batch_size`` images, grouped by how many
    samples each wants; batch ``k`` uses seed ``seed + k``. ``progress(n)`` is called with the
    number of images finished after each batch.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    cases = evaluation.cases(prompts)
    if not cases:
        raise InputError("the evaluation has no prompts to run")
    wanted = [case.samples for case in cases]
    if min(wanted) < 1:
        raise InputError("every evaluation case needs at least one sample")
    images: list[list[Image.Image]] = [[] for _ in cases]
    batch_index = 0
    for n in sorted(set(wanted)):
        indices = [i for i, w in enumerate(wanted) if w == n]
        per_batch = max(1, batch_size // n)
        for start in range(0, len(indices), per_batch):
            chunk = indices[start : start + per_batch]
            out = generate([cases[i].prompt for i in chunk], n, seed + batch_index)
            batch_index += 1
            if len(out) != n * len(chunk):
                raise InputError(f"generate returned {len(out)} images for {len(chunk)} prompts × {n}")
            for j, i in enumerate(chunk):
                images[i] = list(out[j * n : (j + 1) * n])
            if progress is not None:
                progress(n * len(chunk))
    report = evaluation.report([EvalSamples(case, imgs) for case, imgs in zip(cases, images)])
    report["run"] = {"seed": seed, "batch_size": batch_size, "prompts": len(cases), "images": sum(wanted)}
    return report
