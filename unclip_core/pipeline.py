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

import dataclasses

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import load_image, tensor_to_pil
from unclip_core.interfaces import Autoencoder, Decoder, DecoderCondition, Encoder, Prior, Sampler, StepCallback, StepInfo
from unclip_core.interfaces import TextEncoding, concat_conditions
from unclip_core.interfaces import Upsampler, UpsamplerCondition
from unclip_core.operations import classify as _classify
from unclip_core.operations import img2img as _img2img
from unclip_core.operations import mixing as _mixing
from unclip_core.operations import inpainting as _inpainting
from unclip_core.operations import interpolation as _interpolation
from unclip_core.operations import inversion as _inversion
from unclip_core.operations import text_diff as _text_diff
from unclip_core.operations import variations as _variations
from unclip_core.precision import Precision
from unclip_core.priors import DiffusionPrior
from unclip_core.prompts import check_negative_prompts, check_prompts
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
    autoencoder: Autoencoder | None = None
    """A latent decoder's autoencoder (the recipe's ``decoder.autoencoder``); None for a pixel decoder."""

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

    @property
    def latent(self) -> bool:
        """Whether the decoder denoises in the autoencoder's latent space."""
        return bool(self.decoder.declared.latent)

    def decoder_shape(self, batch: int) -> tuple[int, int, int, int]:
        """What the decoder stage samples: ``[B, 3, s, s]`` pixels, or for a latent decoder
        ``[B, latent_channels, s / downscale, s / downscale]`` latents."""
        if not self.latent:
            return (batch, self.decoder.in_channels, self.base_size, self.base_size)
        autoencoder = self._autoencoder()
        side = self.base_size // autoencoder.downscale
        return (batch, autoencoder.latent_channels, side, side)

    def _autoencoder(self) -> Autoencoder:
        if self.autoencoder is None:
            raise InputError(f"decoder {type(self.decoder).__name__} denoises in latent space but the pipeline has no autoencoder")
        return self.autoencoder

    def to_pixels(self, x: Tensor) -> Tensor:
        """The decoder stage's output as images in [-1, 1] (a latent decoder's through its autoencoder)."""
        if self.latent:
            autoencoder = self._autoencoder()
            with running(self.settings.precision, self.device, autoencoder):
                x = autoencoder.decode(x.to(self.device))
        return x.float().clamp(-1, 1)

    def to_latents(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images ``[B, 3, s, s]`` in [-1, 1] as the decoder stage's variable: the images
        themselves, or a latent decoder's autoencoder's encoding of them."""
        if not self.latent:
            return images.to(self.device).float()
        autoencoder = self._autoencoder()
        with running(self.settings.precision, self.device, autoencoder):
            return autoencoder.encode(images.to(self.device), generator).float()

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
    def encode_text(self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None) -> TextEncoding:
        """The prompts' encoding; when a stage's ``null_caption`` is ``empty`` it also carries
        the empty caption's, encoded as one batch of ``""`` beside the prompts (diffusers' order
        of work, so the numbers match). ``negative_prompts`` (one per prompt) are encoded in
        its place and read by every stage's unconditional branch — except where the decoder has
        a caption encoder of its own (Stable unCLIP): the encoding then also carries the
        decoder's (``decoder``), whose unconditional caption is the negative prompts' (or
        ``""``'s), and the prior keeps ``""``, as diffusers' StableUnCLIPPipeline does."""
        own = self.decoder_text(prompts, negative_prompts)
        if own is not None:
            negative_prompts = None
        with running(self.settings.precision, self.device, self.encoder):
            text = self.encoder.encode_text(list(prompts))
            if negative_prompts is not None:
                text = text.with_null(self.encoder.encode_text(list(negative_prompts)), negative=True)
            elif "empty" in (self.settings.prior_null_caption, self.settings.decoder_null_caption):
                text = text.with_null(self.encoder.encode_text([""] * len(text)))
        return text if own is None else dataclasses.replace(text, decoder=own)

    @staticmethod
    def _null_for(text: TextEncoding | None, mode: str) -> TextEncoding | None:
        """``text`` with the empty caption kept only for a stage that reads it (negative
        prompts are read by every stage)."""
        if text is None or mode == "empty" or text.null is None or text.negative:
            return text
        return text.with_null(None)

    def embed_prompts(
        self, text: TextEncoding, generator: torch.Generator, callback: StepCallback | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``(image embeddings, the decoder's negative image embeddings or None)`` for ``text``.

        A decoder that declares ``negative_image`` (Kandinsky 2.2) reads, in its unconditional
        branch, the prior's sample for each negative prompt: the prior then samples prompts and
        negative prompts as one batch (prompts first), each guided against the negative prompt,
        as diffusers' Kandinsky prior pipeline does. Without negative prompts that decoder reads
        its own null image embedding. Any other decoder reads the negative prompts as its
        unconditional caption (they ride in ``text.null``)."""
        if not (text.negative and self.decoder.declared.negative_image):
            return self.sample_prior(text, generator, callback), None
        negatives = text.null
        assert negatives is not None
        both = concat_conditions(text, negatives.with_null(negatives, negative=True))
        embeds = self.sample_prior(both, generator, callback)
        return embeds[: len(text)], embeds[len(text) :]

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

    def decoder_condition(
        self, image_embed: Tensor, text: TextEncoding | None, negative_image_embed: Tensor | None = None
    ) -> DecoderCondition:
        if text is not None and text.decoder is not None:
            text = text.decoder  # the decoder's own encoding of the captions
        cond = DecoderCondition.build(image_embed.to(self.device), self._null_for(text, self.settings.decoder_null_caption))
        if negative_image_embed is not None:
            cond.negative_image_embed = negative_image_embed.to(self.device)
        return cond

    def decoder_text(self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None) -> TextEncoding | None:
        """The decoder's own encoding of ``prompts`` where it has a caption encoder (Stable
        unCLIP), with the negative prompts' (``""``'s without) as guidance's unconditional
        caption; None for a decoder that reads the encoder's encoding."""
        encode = getattr(self.decoder, "encode_captions", None)  # a stand-in model may lack the Decoder hooks
        if encode is None:
            return None
        with running(self.settings.precision, self.device, self.decoder):
            own = encode(list(prompts))
            if own is None:
                return None
            null = encode(list(negative_prompts or [""] * len(prompts)))
            return own.with_null(null, negative=negative_prompts is not None)

    def decode(
        self, image_embed: Tensor, text: TextEncoding | None, generator: torch.Generator, *, x_T: Tensor | None = None,
        sampler: Sampler | None = None, guidance_scale: float | None = None, callback: StepCallback | None = None,
        inpaint: tuple[Tensor, Tensor] | None = None, drop_image: bool = False,
        negative_image_embed: Tensor | None = None, start: tuple[Tensor, float] | None = None,
    ) -> Tensor:
        """Base-resolution images ``[B, 3, s, s]`` from image embeddings (and captions).

        ``inpaint``: ``(known image [1 or B, 3, s, s], repaint mask [1 or B, 1, s, s])`` for a
        decoder that declares ``inpainting``: it reads them as extra input channels.
        ``drop_image``: draw from the caption alone (GLIDE-like) — the decoder reads its learned
        null embedding, as in classifier-free dropout, in place of ``image_embed`` (whose values
        are then unused; only its batch size counts).
        ``negative_image_embed``: what the unconditional branch reads as image embedding
        (decoders declaring ``negative_image``; :meth:`embed_prompts`).
        ``start``: ``(images [B, 3, s, s] in [-1, 1], strength)`` — img2img: the images, in the
        decoder's space (a latent decoder's autoencoder encodes them), noised part of the way
        and denoised from there (:meth:`Sampler.sample_from`)."""
        cond = self.decoder_condition(image_embed, text, negative_image_embed)
        if drop_image:
            if text is None:
                raise InputError("drop_image needs a caption: with neither image embedding nor caption there is nothing to draw")
            cond.drop_image = torch.ones_like(cond.drop_image)
        if inpaint is not None:
            if self.latent:
                raise InputError("a decoder trained for inpainting (inpainting: true) must be a pixel decoder; a latent decoder inpaints with RePaint")
            known, repaint = (value.to(self.device).float().expand(image_embed.shape[0], -1, -1, -1) for value in inpaint)
            cond.inpaint_image, cond.inpaint_mask = known, repaint
        prepare = getattr(self.decoder, "prepare_condition", None)
        if prepare is not None:
            with torch.no_grad():
                cond = prepare(cond, generator)  # draws before x_T, as diffusers does
        stage = self.stage("decoder")
        if start is not None:
            images, strength = start
            x0 = self.to_latents(images.expand(image_embed.shape[0], -1, -1, -1), generator)
            x = stage.sample_from(cond, x0, strength, generator, sampler=sampler, guidance_scale=guidance_scale, callback=callback)
            return self.to_pixels(x)
        x = stage.sample(
            cond, self.decoder_shape(image_embed.shape[0]), generator, x_T=x_T, sampler=sampler,
            guidance_scale=guidance_scale, callback=callback,
        )
        return self.to_pixels(x)

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
        negative_prompt: str | Sequence[str] | None = None,
        *,
        generator: Any = None,
        on_step: Callable[[str, StepInfo], None] | None = None,
    ) -> Tensor:
        """Text → images ``[len(prompts)·n, 3, H, W]`` in [-1, 1] (prompt-major order).

        ``negative_prompt``: one caption per prompt (a single string serves every prompt)
        that classifier-free guidance steers away from, as each stage defines it: the
        unconditional caption of the prior and of a caption-reading decoder, and for a decoder
        that declares ``negative_image`` (Kandinsky 2.2) the prior's sample for it. A decoder with
        its own caption encoder (Stable unCLIP) reads its encoding of the negative prompts, and
        the prior then keeps ``""``, as diffusers' StableUnCLIPPipeline does.

        ``generator``: draw from this in place of ``seed``'s (``unclip serve`` passes a
        :class:`~unclip_core.diffusion.row_generators.RowGenerators` to batch requests).
        ``on_step(stage, info)``: called after every sampler step of every stage ("prior",
        "decoder", "upsampler"), e.g. for progress and previews of the decoder's x̂₀."""
        prompts = check_prompts(prompts)
        negatives = check_negative_prompts(negative_prompt, len(prompts))
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        generator = self.generator(seed) if generator is None else generator

        def stage(name: str) -> StepCallback | None:
            return None if on_step is None else (lambda info: on_step(name, info))

        text = self.encode_text(prompts, negatives).repeat_interleave(n)  # each prompt encoded once
        image_embed, negative_embed = self.embed_prompts(text, generator, stage("prior"))
        base = _classify.decode_best_of(self, image_embed, text, generator, callback=stage("decoder"),
                                        negative_image_embed=negative_embed)
        return self.upsample(base, generator, stage("upsampler"))

    def generate(
        self, prompts: str | Sequence[str], n: int = 1, seed: int = 0, negative_prompt: str | Sequence[str] | None = None
    ) -> list[Image.Image]:
        """Text → ``n`` PIL images per prompt (prompt-major order). Same seed, same images."""
        return tensor_to_pil(self.generate_tensors(prompts, n, seed, negative_prompt))

    # ------------------------------------------------------------------ operations (unclip_core.operations)
    variations = _variations.variations
    image_tensor, invert, decode_latent = _inversion.image_tensor, _inversion.invert, _inversion.decode_latent
    interpolate = _interpolation.interpolate
    text_diff = _text_diff.text_diff
    inpaint_tensors, inpaint = _inpainting.inpaint_tensors, _inpainting.inpaint
    classify, rerank = _classify.classify, _classify.rerank
    img2img_tensors, img2img = _img2img.img2img_tensors, _img2img.img2img
    mix_tensors, mix = _mixing.mix_tensors, _mixing.mix
