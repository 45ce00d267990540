"""Same generator seed, same result, whatever torch's global RNG holds."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from unclip_core.contracts._support import PROMPTS, _differ, _generator, _images, _label, _require, _sampler_for, _sizes, _to, _with_global_seed
from unclip_core.contracts.inputs import _diffusion_inputs, make_text_encoding
from unclip_core.contracts.sampler import _SmoothDenoiser
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.interfaces import DiffusionModel, Encoder, Prior, Sampler


def check_determinism(
    component: Any,
    *,
    sampler: Sampler | None = None,
    batch: Mapping[str, Any] | None = None,
    stochastic: bool | None = None,
) -> None:
    """Same inputs and generator seed, same result — even when torch's global RNG holds
    something else, since every random draw must come from the ``generator`` argument.

    Checks ``encode_text``/``encode_image`` (encoders), ``sample`` (priors, samplers),
    ``forward`` (diffusion models) and, given a ``batch``, ``training_loss``. A sampler must
    also give different samples for different seeds (it draws ``x_T``); a prior must when
    ``stochastic`` is True, and must not when it is False.
    """
    label = _label(component)
    # (what, run(seed), whether different seeds must give different results: None = either)
    runs: list[tuple[str, Callable[[int], Any], bool | None]] = []
    if isinstance(component, Encoder):
        size = _sizes(component.declared)[3]
        images = _images(2, size, _generator(12)).to(component.device)
        runs.append(("encode_text", lambda seed: component.encode_text(list(PROMPTS)).embed, False))
        runs.append(("encode_image", lambda seed: component.encode_image(images), False))
    if isinstance(component, Prior):
        embed_dim, length, width, _ = _sizes(component.declared)
        text = _to(make_text_encoding(3, embed_dim, length, width, _generator(13)), component)
        use = _sampler_for(component, sampler)

        def prior_sample(seed: int) -> Tensor:
            return component.sample(text, sampler=use, generator=_generator(seed), guidance_scale=2.0, candidates=2)

        runs.append(("sample", prior_sample, stochastic))
    if isinstance(component, DiffusionModel):
        x_t, t, cond = _diffusion_inputs(component, _generator(14))
        runs.append(("forward", lambda seed: component(x_t, t, cond), False))
    if isinstance(component, Sampler):
        smooth, shape = _SmoothDenoiser(NoiseSchedule.from_name("cosine", 1000)), (2, 3, 8, 8)
        runs.append(("sample", lambda seed: component.sample(smooth, shape, generator=_generator(seed)), True))
    if batch is not None and callable(getattr(component, "training_loss", None)):
        runs.append(("training_loss", lambda seed: component.training_loss(dict(batch), _generator(seed)), None))

    for what, run, must_vary in runs:
        with torch.no_grad():
            first = _with_global_seed(101, lambda: run(0))
            second = _with_global_seed(202, lambda: run(0))
            _require(
                torch.equal(first, second),
                label,
                f"{what} gave different results for the same generator seed when torch's global RNG "
                "changed; every random draw must use the explicit generator it is given",
            )
            if must_vary is not None and _differ(first, run(1)) != must_vary:
                raise AssertionError(
                    f"{label}: {what} gave identical results for generator seeds 0 and 1; it must draw its "
                    "randomness from the generator it is given"
                    if must_vary
                    else f"{label}: {what} gave different results for generator seeds 0 and 1; it was expected "
                    "not to depend on the seed"
                )
