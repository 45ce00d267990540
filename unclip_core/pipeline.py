"""The assembled unCLIP stack: encode → prior → decoder → upsamplers.

``Pipeline`` holds one encoder, one prior (with its sampler), one decoder (with its sampler)
and any number of upsampling stages, and runs the chain. Each diffusion stage runs through a
:class:`~unclip_core.stage.Stage` (guidance, precision, progress); the paper's other
operations (variations, interpolation, text diffs, inversion, inpainting, classification)
are functions in :mod:`unclip_core.operations`, exposed here as methods. It owns no model
code: every call goes through the component interfaces, so any plugin that honours them
works here.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import load_image, tensor_to_pil
from unclip_core.interfaces import Decoder, DecoderCondition, Encoder, Prior, Sampler, StepCallback, StepInfo, TextEncoding
from unclip_core.interfaces import Upsampler, UpsamplerCondition
from unclip_core.operations import classify as _classify
from unclip_core.operations import inpainting as _inpainting
from unclip_core.operations import interpolation as _interpolation
from unclip_core.operations import inversion as _inversion
from unclip_core.operations import text_diff as _text_diff
from unclip_core.operations import variations as _variations
from unclip_core.precision import Precision
from unclip_core.priors import DiffusionPrior
from unclip_core.prompts import check_prompts
from unclip_core.stage import ProgressFactory, Stage, progress_callback, running

__all__ = ["Pipeline", "PipelineSettings", "ProgressFactory"]


@dataclass
class PipelineSettings:
    prior_guidance_scale: float = 4.0
    prior_candidates: int = 2
    decoder_guidance_scale: float = 3.0
    decoder_candidates: int = 1
    """Best of N decoded images by CLIP similarity to the caption (``generate``): N decoder runs."""
    prior_null_caption: Literal["learned", "empty"] = "learned"
    """The prior's unconditional caption in guidance: the model's learned one, or the
    encoder's encoding of "" (computed with the prompts, as diffusers' unCLIP pipeline does)."""
    decoder_null_caption: Literal["learned", "empty"] = "learned"
    device: str = "cpu"
    precision: Precision = "fp32"
    """``fp32``, ``bf16`` (autocast) or ``bf16-matmul`` (oneDNN's bf16 arithmetic inside fp32
    operations): :mod:`unclip_core.precision`."""
    memory_format: Literal["channels_last", "contiguous"] = "contiguous"
    """The layout the models' 4-D weights were put in when the pipeline was built (the recipe's
    ``runtime.memory_format``); convolutions follow their weights' layout."""


@dataclass
class Pipeline:
    encoder: Encoder
    prior: Prior
    prior_sampler: Sampler | None
    decoder: Decoder
    decoder_sampler: Sampler
    upsamplers: list[tuple[Upsampler, Sampler]] = field(default_factory=list)
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    recipe: Any = None
    """The :class:`~unclip_core.recipe.validate.ResolvedRecipe` this was built from, if any."""
    registry: Any = None
    progress: ProgressFactory | None = None
    """Set by the CLI to show progress bars; ``None`` is silent."""
    inversion_sampler: Sampler | None = None
    """Deterministic sampler (with ``eta``) for inversion, variations, interpolation, text diffs."""
    inversion_follows_decoder: bool = True
    """The recipe named no ``decoder.inversion_sampler``: the registered one takes the decoder
    sampler's ``steps`` and ``timestep_spacing`` (whatever that sampler is now)."""

    @property
    def device(self) -> torch.device:
        return torch.device(self.settings.device)

    @property
    def image_size(self) -> int:
        """Side of the final images."""
        return int((self.upsamplers[-1][0] if self.upsamplers else self.decoder).declared.image_size)

    @property
    def base_size(self) -> int:
        return int(self.decoder.declared.image_size)

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def stage(self, name: str) -> Stage:
        """``prior``, ``decoder`` or ``upsampler N`` as a :class:`Stage` of this pipeline."""
        scales = {"prior": self.settings.prior_guidance_scale, "decoder": self.settings.decoder_guidance_scale}
        models = {"prior": (self.prior, self.prior_sampler), "decoder": (self.decoder, self.decoder_sampler)}
        models.update({f"upsampler {i}": stage for i, stage in enumerate(self.upsamplers)})
        model, sampler = models[name]
        return Stage(name, model, sampler, scales.get(name, 1.0), self.settings.precision, self.device, self.progress)

    # ------------------------------------------------------------------ the chain
    def encode_text(self, prompts: Sequence[str]) -> TextEncoding:
        """The prompts' encoding; when a stage's ``null_caption`` is ``empty`` it also carries
        the empty caption's, encoded as one batch of ``""`` beside the prompts (diffusers' order
        of work, so the numbers match)."""
        with running(self.settings.precision, self.device, self.encoder):
            text = self.encoder.encode_text(list(prompts))
            if "empty" in (self.settings.prior_null_caption, self.settings.decoder_null_caption):
                text = text.with_null(self.encoder.encode_text([""] * len(text)))
            return text

    @staticmethod
    def _null_for(text: TextEncoding | None, mode: str) -> TextEncoding | None:
        """``text`` with the empty caption kept only for a stage that reads it."""
        return text if text is None or mode == "empty" or text.null is None else text.with_null(None)

    def encode_image(self, images: Sequence[Image.Image | str | Path] | Tensor) -> Tensor:
        if not isinstance(images, Tensor):
            images = [load_image(image) for image in images]
        with running(self.settings.precision, self.device, self.encoder):
            return self.encoder.encode_image(images).float()

    def sample_prior(self, text: TextEncoding, generator: torch.Generator, callback: StepCallback | None = None) -> Tensor:
        """Image embeddings, best of ``prior_candidates``: a diffusion prior runs as a Stage,
        any other (autoregressive) prior samples by itself."""
        text, candidates = self._null_for(text, self.settings.prior_null_caption), self.settings.prior_candidates
        if isinstance(self.prior, DiffusionPrior):
            return self.prior.sample_in(self.stage("prior"), text, generator, candidates, callback).float()
        with progress_callback(self.progress, "prior", self.prior_sampler, callback) as step:
            with running(self.settings.precision, self.device, self.prior):
                return self.prior.sample(
                    text, sampler=self.prior_sampler, generator=generator,  # type: ignore[arg-type]
                    guidance_scale=self.settings.prior_guidance_scale, candidates=candidates, callback=step,
                ).float()

    def decoder_condition(self, image_embed: Tensor, text: TextEncoding | None) -> DecoderCondition:
        return DecoderCondition.build(image_embed.to(self.device), self._null_for(text, self.settings.decoder_null_caption))

    def decode(
        self, image_embed: Tensor, text: TextEncoding | None, generator: torch.Generator, *, x_T: Tensor | None = None,
        sampler: Sampler | None = None, guidance_scale: float | None = None, callback: StepCallback | None = None,
        inpaint: tuple[Tensor, Tensor] | None = None, drop_image: bool = False,
    ) -> Tensor:
        """Base-resolution images ``[B, 3, s, s]`` from image embeddings (and captions).

        ``inpaint``: ``(known image [1 or B, 3, s, s], repaint mask [1 or B, 1, s, s])`` for a
        decoder that declares ``inpainting``: it reads them as extra input channels.
        ``drop_image``: draw from the caption alone (GLIDE-like) — the decoder reads its learned
        null embedding, as in classifier-free dropout, in place of ``image_embed`` (whose values
        are then unused; only its batch size counts)."""
        cond = self.decoder_condition(image_embed, text)
        if drop_image:
            if text is None:
                raise InputError("drop_image needs a caption: with neither image embedding nor caption there is nothing to draw")
            cond.drop_image = torch.ones_like(cond.drop_image)
        if inpaint is not None:
            known, repaint = (value.to(self.device).float().expand(image_embed.shape[0], -1, -1, -1) for value in inpaint)
            cond.inpaint_image, cond.inpaint_mask = known, repaint
        shape = (image_embed.shape[0], self.decoder.in_channels, self.base_size, self.base_size)
        x = self.stage("decoder").sample(
            cond, shape, generator, x_T=x_T, sampler=sampler, guidance_scale=guidance_scale, callback=callback
        )
        return x.float().clamp(-1, 1)

    def upsample(
        self, images: Tensor, generator: torch.Generator, callback: StepCallback | None = None, *,
        samplers: Sequence[Sampler] | None = None,
    ) -> Tensor:
        """Run every upsampling stage in turn (with ``samplers`` in place of the stages' own, if given)."""
        for index, (model, _) in enumerate(self.upsamplers):
            size = int(model.declared.image_size)
            shape = (images.shape[0], model.in_channels, size, size)
            images = self.stage(f"upsampler {index}").sample(
                UpsamplerCondition(images.to(self.device)), shape, generator,
                sampler=samplers[index] if samplers is not None else None, callback=callback,
            ).float().clamp(-1, 1)
        return images

    # ------------------------------------------------------------------ operations
    def generate_tensors(
        self,
        prompts: str | Sequence[str],
        n: int = 1,
        seed: int = 0,
        *,
        generator: Any = None,
        on_step: Callable[[str, StepInfo], None] | None = None,
    ) -> Tensor:
        """Text → images ``[len(prompts)·n, 3, H, W]`` in [-1, 1] (prompt-major order).

        ``generator``: draw from this in place of ``seed``'s (``unclip serve`` passes a
        :class:`~unclip_core.diffusion.row_generators.RowGenerators` to batch requests).
        ``on_step(stage, info)``: called after every sampler step of every stage ("prior",
        "decoder", "upsampler"), e.g. for progress and previews of the decoder's x̂₀."""
        prompts = check_prompts(prompts)
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        generator = self.generator(seed) if generator is None else generator

        def stage(name: str) -> StepCallback | None:
            return None if on_step is None else (lambda info: on_step(name, info))

        text = self.encode_text(prompts).repeat_interleave(n)  # each prompt encoded once
        image_embed = self.sample_prior(text, generator, stage("prior"))
        base = _classify.decode_best_of(self, image_embed, text, generator, callback=stage("decoder"))
        return self.upsample(base, generator, stage("upsampler"))

    def generate(self, prompts: str | Sequence[str], n: int = 1, seed: int = 0) -> list[Image.Image]:
        """Text → ``n`` PIL images per prompt (prompt-major order). Same seed, same images."""
        return tensor_to_pil(self.generate_tensors(prompts, n, seed))

    # ------------------------------------------------------------------ operations (unclip_core.operations)
    variations = _variations.variations
    image_tensor, invert, decode_latent = _inversion.image_tensor, _inversion.invert, _inversion.decode_latent
    interpolate = _interpolation.interpolate
    text_diff = _text_diff.text_diff
    inpaint_tensors, inpaint = _inpainting.inpaint_tensors, _inpainting.inpaint
    classify, rerank = _classify.classify, _classify.rerank
