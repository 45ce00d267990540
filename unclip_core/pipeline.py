"""The assembled unCLIP stack and everything it can do.

``Pipeline`` holds one encoder, one prior (with its sampler), one decoder (with its sampler)
and any number of upsampling stages, and composes them into the paper's operations:
generation, variations, interpolation, text diffs, DDIM inversion, zero-shot classification
and reranking, plus inpainting (with a trained inpainting decoder, or training-free). It
owns no model code of its own: every call goes through the component interfaces, so any
plugin that honours them works here.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from unclip_core.diffusion.slerp import slerp, text_diff_direction
from unclip_core.errors import InputError
from unclip_core.images import load_image, pil_to_tensor, resize_tensor, tensor_to_pil
from unclip_core.interfaces import (
    Decoder,
    DecoderCondition,
    Encoder,
    Prior,
    Sampler,
    StepCallback,
    StepInfo,
    TextEncoding,
    Upsampler,
    UpsamplerCondition,
)
from unclip_core.precision import Precision, onednn_bf16_math

ProgressFactory = Callable[[str, int], Any]
"""``progress(stage_name, total_steps)`` → an object with ``update(n)`` and ``close()`` (tqdm)."""


@dataclass
class PipelineSettings:
    prior_guidance_scale: float = 4.0
    prior_candidates: int = 2
    decoder_guidance_scale: float = 3.0
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
    inversion_sampler: Sampler | None = None
    """Deterministic sampler (with ``eta``) for inversion, variations, interpolation, text diffs."""
    inversion_follows_decoder: bool = True
    """The recipe named no ``decoder.inversion_sampler``: the registered one takes the decoder
    sampler's ``steps`` and ``timestep_spacing`` (whatever that sampler is now)."""
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    recipe: Any = None
    """The :class:`~unclip_core.recipe.validate.ResolvedRecipe` this was built from, if any."""
    registry: Any = None
    progress: ProgressFactory | None = None
    """Set by the CLI to show progress bars; ``None`` is silent."""

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return torch.device(self.settings.device)

    @property
    def image_size(self) -> int:
        """Side of the final images."""
        if self.upsamplers:
            return int(self.upsamplers[-1][0].declared.image_size)
        return int(self.decoder.declared.image_size)

    @property
    def base_size(self) -> int:
        return int(self.decoder.declared.image_size)

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @contextlib.contextmanager
    def _running(self, *models: object) -> Iterator[None]:
        """Inference mode plus the recipe's precision (bf16 autocast, or oneDNN's bf16 arithmetic,
        where asked for). ``models``: the components this stage runs, whose weights' bf16 copies
        autocast keeps for the call (none named: every component's)."""
        with torch.no_grad():
            if self.settings.precision == "bf16":
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16), self._bf16_weights_cast_once(*models):
                    yield
            elif self.settings.precision == "bf16-matmul":
                with onednn_bf16_math():
                    yield
            else:
                yield

    @contextlib.contextmanager
    def _bf16_weights_cast_once(self, *models: object) -> Iterator[None]:
        """Let autocast keep its bf16 copy of each weight for the whole call.

        Autocast caches the copies it casts only of leaf tensors that require grad, and the
        built models' parameters do not (``assemble`` freezes them), so without this every
        model call would cast every weight again, memory-bound work that tripled a small-batch
        bf16 linear stack's time (docs/benchmarks.md, "Karlo against diffusers"). Under
        ``no_grad`` requiring grad records nothing. The cache lives until the outermost
        autocast region ends (each stage is one) and costs half the running stage's fp32
        weights in memory."""
        models = models or (self.encoder, self.prior, self.decoder, *(model for model, _ in self.upsamplers))
        frozen = [p for model in models if isinstance(model, torch.nn.Module) for p in model.parameters()
                  if not p.requires_grad and p.is_floating_point()]
        for parameter in frozen:
            parameter.requires_grad_(True)
        try:
            yield
        finally:
            for parameter in frozen:
                parameter.requires_grad_(False)

    def _callback(self, stage: str, total: int | None, user: StepCallback | None) -> tuple[StepCallback | None, Callable[[], None]]:
        bar = self.progress(stage, total or 0) if self.progress is not None else None
        if bar is None and user is None:
            return None, lambda: None

        def callback(info: StepInfo) -> None:
            if bar is not None:
                bar.update(1)
            if user is not None:
                user(info)

        return callback, (bar.close if bar is not None else (lambda: None))

    def _steps(self, sampler: Sampler | None) -> int | None:
        return getattr(getattr(sampler, "config", None), "steps", None)

    def _sampler_like(self, sampler: Sampler, **changes: Any) -> Sampler:
        """A sampler of the same kind with some settings changed (e.g. DDIM's eta)."""
        config = sampler.config.model_copy(update=changes)
        return type(sampler)(type(sampler.config).model_validate(config.model_dump()))

    def _inversion(self, eta: float = 0.0) -> Sampler:
        """The recipe's inversion sampler (``decoder.inversion_sampler``) at noise scale ``eta``."""
        sampler = self.inversion_sampler
        if sampler is None:
            raise InputError(
                "this recipe has no inversion sampler and no plugin registers one; set decoder.inversion_sampler"
            )
        fields = type(sampler.config).model_fields
        changes: dict[str, Any] = {"eta": eta} if "eta" in fields else {}
        if self.inversion_follows_decoder:
            for key in ("steps", "timestep_spacing"):
                value = getattr(self.decoder_sampler.config, key, None)
                if value is not None and key in fields:
                    changes[key] = value
        if eta and "eta" not in fields:
            raise InputError(f"decoder.inversion_sampler ({type(sampler).__name__}) has no eta setting; variations need one")
        return self._sampler_like(sampler, **changes) if changes else sampler

    @staticmethod
    def _check_prompts(
        prompts: str | Sequence[str], what: str = "prompt", names: Sequence[str] | None = None, hint: str = ""
    ) -> list[str]:
        """The prompts as a list, or a one-line error naming the one that is not text or is
        empty: ``what`` and its index (``label 1``), or ``names[index]`` where given."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, Sequence):  # None, a number, a set: nothing with an order
            raise InputError(f"prompts must be text or a list of texts, got {type(prompts).__name__}")
        prompts = list(prompts)
        if not prompts:
            raise InputError("no prompt given")
        for index, prompt in enumerate(prompts):
            name = names[index] if names is not None else f"{what} {index}"
            if not isinstance(prompt, str):
                raise InputError(f"{name} is {type(prompt).__name__}, not text")
            if not prompt.strip():
                raise InputError(f"{name} is empty; {hint or 'describe the image to generate'}")
        return prompts

    # ------------------------------------------------------------------ stages
    def encode_text(self, prompts: Sequence[str]) -> TextEncoding:
        """The prompts' encoding; when a stage's ``null_caption`` is ``empty`` it also carries
        the empty caption's, encoded as one batch of ``""`` beside the prompts (diffusers' order
        of work, so the numbers match)."""
        with self._running(self.encoder):
            text = self.encoder.encode_text(list(prompts))
            if "empty" in (self.settings.prior_null_caption, self.settings.decoder_null_caption):
                text = text.with_null(self.encoder.encode_text([""] * len(text)))
            return text

    @staticmethod
    def _null_for(text: TextEncoding | None, mode: str) -> TextEncoding | None:
        """``text`` with the empty caption kept only for a stage that reads it."""
        if text is None or mode == "empty" or text.null is None:
            return text
        return text.with_null(None)

    def encode_image(self, images: Sequence[Image.Image | str | Path] | Tensor) -> Tensor:
        if not isinstance(images, Tensor):
            images = [load_image(image) for image in images]
        with self._running(self.encoder):
            return self.encoder.encode_image(images).float()

    def sample_prior(self, text: TextEncoding, generator: torch.Generator, callback: StepCallback | None = None) -> Tensor:
        cb, close = self._callback("prior", self._steps(self.prior_sampler), callback)
        try:
            with self._running(self.prior):
                return self.prior.sample(
                    self._null_for(text, self.settings.prior_null_caption),  # type: ignore[arg-type]
                    sampler=self.prior_sampler,
                    generator=generator,
                    guidance_scale=self.settings.prior_guidance_scale,
                    candidates=self.settings.prior_candidates,
                    callback=cb,
                ).float()
        finally:
            close()

    def decoder_condition(self, image_embed: Tensor, text: TextEncoding | None) -> DecoderCondition:
        return DecoderCondition.build(image_embed.to(self.device), self._null_for(text, self.settings.decoder_null_caption))

    def decode(
        self,
        image_embed: Tensor,
        text: TextEncoding | None,
        generator: torch.Generator,
        *,
        x_T: Tensor | None = None,
        sampler: Sampler | None = None,
        guidance_scale: float | None = None,
        callback: StepCallback | None = None,
        inpaint: tuple[Tensor, Tensor] | None = None,
        drop_image: bool = False,
    ) -> Tensor:
        """Base-resolution images ``[B, 3, s, s]`` from image embeddings (and captions).

        ``inpaint``: ``(known image [1 or B, 3, s, s], repaint mask [1 or B, 1, s, s])`` for a
        decoder that declares ``inpainting``: it reads them as extra input channels.
        ``drop_image``: draw from the caption alone (GLIDE-like) — the decoder reads its learned
        null embedding, as in classifier-free dropout, in place of ``image_embed`` (whose values
        are then unused; only its batch size counts)."""
        sampler = sampler or self.decoder_sampler
        scale = self.settings.decoder_guidance_scale if guidance_scale is None else guidance_scale
        cond = self.decoder_condition(image_embed, text)
        if drop_image:
            if text is None:
                raise InputError("drop_image needs a caption: with neither image embedding nor caption there is nothing to draw")
            cond.drop_image = torch.ones_like(cond.drop_image)
        if inpaint is not None:
            batch = image_embed.shape[0]
            known, repaint = (value.to(self.device).float().expand(batch, -1, -1, -1) for value in inpaint)
            cond.inpaint_image, cond.inpaint_mask = known, repaint
        shape = (image_embed.shape[0], self.decoder.in_channels, self.base_size, self.base_size)
        cb, close = self._callback("decoder", self._steps(sampler), callback)
        try:
            with self._running(self.decoder):
                x = sampler.sample(self.decoder.denoiser(cond, scale), shape, generator=generator, x_T=x_T, callback=cb)
        finally:
            close()
        return x.float().clamp(-1, 1)

    def upsample(
        self,
        images: Tensor,
        generator: torch.Generator,
        callback: StepCallback | None = None,
        *,
        samplers: Sequence[Sampler] | None = None,
    ) -> Tensor:
        """Run every upsampling stage in turn (with ``samplers`` in place of the stages' own, if given)."""
        stages = self.upsamplers if samplers is None else [(model, s) for (model, _), s in zip(self.upsamplers, samplers)]
        for index, (model, sampler) in enumerate(stages):
            size = int(model.declared.image_size)
            cond = UpsamplerCondition(images.to(self.device))
            shape = (images.shape[0], model.in_channels, size, size)
            cb, close = self._callback(f"upsampler {index}", self._steps(sampler), callback)
            try:
                with self._running(model):
                    images = sampler.sample(model.denoiser(cond, 1.0), shape, generator=generator, callback=cb)
            finally:
                close()
            images = images.float().clamp(-1, 1)
        return images

    # ------------------------------------------------------------------ operations
    def generate_tensors(self, prompts: str | Sequence[str], n: int = 1, seed: int = 0) -> Tensor:
        """Text → images ``[len(prompts)·n, 3, H, W]`` in [-1, 1] (prompt-major order)."""
        prompts = self._check_prompts(prompts)
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        generator = self.generator(seed)
        text = self.encode_text(prompts).repeat_interleave(n)  # each prompt encoded once
        image_embed = self.sample_prior(text, generator)
        base = self.decode(image_embed, text, generator)
        return self.upsample(base, generator)

    def generate(self, prompts: str | Sequence[str], n: int = 1, seed: int = 0) -> list[Image.Image]:
        """Text → ``n`` PIL images per prompt (prompt-major order). Same seed, same images."""
        return tensor_to_pil(self.generate_tensors(prompts, n, seed))

    def inpaint_tensors(
        self,
        image: Image.Image | str | Path | Tensor,
        mask: Image.Image | str | Path | Tensor,
        prompt: str,
        *,
        n: int = 1,
        seed: int = 0,
        resample: int = 1,
    ) -> Tensor:
        """Repaint the white part of ``mask`` in ``image`` to fit ``prompt``. Returns
        ``[n, 3, H, W]`` in [-1, 1] at the final size, in which the known (black) region is
        the input resized, exactly.

        A decoder that declares ``inpainting`` (trained for it) reads the known image and the
        mask at its size as input channels, and its result's known region is pasted exactly
        before upsampling; any other decoder is run training-free with RePaint (see
        :mod:`unclip_core.inpainting`). Upsampling stages always keep the known region with
        RePaint, and ``resample`` applies to every stage that runs RePaint."""
        from unclip_core.inpainting import InpaintRegion

        if not isinstance(prompt, str):
            raise InputError(f"inpaint takes one prompt (text), got {type(prompt).__name__}")
        self._check_prompts([prompt])
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        region = InpaintRegion.from_inputs(image, mask)
        trained = bool(self.decoder.declared.inpainting)
        if not trained:
            decoder_sampler = region.sampler(self.decoder_sampler, self.base_size, resample, "decoder", self.device)
        stage_samplers = [
            region.sampler(sampler, int(model.declared.image_size), resample, f"upsamplers.{index}", self.device)
            for index, (model, sampler) in enumerate(self.upsamplers)
        ]
        generator = self.generator(seed)
        text = self.encode_text([prompt] * n)
        image_embed = self.sample_prior(text, generator)
        if trained:
            channels = (region.known(self.base_size), region.repaint_mask(self.base_size).float())
            base = region.paste(self.decode(image_embed, text, generator, inpaint=channels))
        else:
            base = self.decode(image_embed, text, generator, sampler=decoder_sampler)
        return region.paste(self.upsample(base, generator, samplers=stage_samplers).float())

    def inpaint(
        self,
        image: Image.Image | str | Path | Tensor,
        mask: Image.Image | str | Path | Tensor,
        prompt: str,
        *,
        n: int = 1,
        seed: int = 0,
        resample: int = 1,
    ) -> list[Image.Image]:
        """:meth:`inpaint_tensors` as PIL images: where the mask is black, the pixels are the
        input image's (centre-cropped to a square and resized to the output size) exactly."""
        return tensor_to_pil(self.inpaint_tensors(image, mask, prompt, n=n, seed=seed, resample=resample))

    def image_tensor(self, image: Image.Image | str | Path | Tensor, size: int | None = None) -> Tensor:
        """``[1, 3, s, s]`` in [-1, 1] at the decoder's size (or ``size``)."""
        size = size or self.base_size
        if isinstance(image, Tensor):
            if image.ndim == 3:
                image = image[None]
            if image.ndim != 4 or image.shape[1] != 3:
                raise InputError(f"image tensor must be [B, 3, H, W], got {tuple(image.shape)}")
            return resize_tensor(image.float(), size).to(self.device)
        return pil_to_tensor([load_image(image)], size).to(self.device)

    def variations(
        self, image: Image.Image | str | Path, n: int = 4, seed: int = 0, eta: float = 1.0
    ) -> list[Image.Image]:
        """Images that keep the input's CLIP image embedding: DDIM with η > 0 from that embedding
        (unCLIP §3.1), caption unknown so the decoder's text input is dropped."""
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        if not 0 <= eta <= 1:  # also refuses nan
            raise InputError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
        generator = self.generator(seed)
        image_embed = self.encode_image([load_image(image)]).repeat(n, 1)
        base = self.decode(image_embed, None, generator, sampler=self._inversion(eta))
        return tensor_to_pil(self.upsample(base, generator))

    def invert(self, image: Image.Image | str | Path | Tensor) -> tuple[Tensor, Tensor]:
        """The bipartite latent (z_i, x_T): CLIP image embedding, and the decoder noise that
        DDIM (η = 0, no guidance) maps back to the image (unCLIP §3)."""
        x0 = self.image_tensor(image)
        if isinstance(image, Tensor):
            z_i = self.encode_image(x0)
        else:
            z_i = self.encode_image([load_image(image)])
        cond = self.decoder_condition(z_i, None)
        cb, close = self._callback("inversion", self._steps(self.decoder_sampler), None)
        try:
            with self._running(self.decoder):
                x_T = self._inversion(0.0).invert(self.decoder.denoiser(cond, 1.0), x0, callback=cb)
        finally:
            close()
        return z_i, x_T.float()

    def decode_latent(self, image_embed: Tensor, x_T: Tensor, *, upsample: bool = True, seed: int = 0) -> Tensor:
        """Deterministic decode of a bipartite latent: DDIM η = 0, no guidance (inverse of
        :meth:`invert`). Upsamplers, if any and asked for, run with ``seed``.

        A latent decodes to the same image wherever it sits in the batch: every row's
        upsampling draws its noise afresh from ``seed``. Otherwise each interpolation frame
        would get different upsampler noise (flicker), and the last frame would not be the
        end image's own reconstruction."""
        base = self.decode(image_embed, None, self.generator(seed), x_T=x_T, sampler=self._inversion(0.0), guidance_scale=1.0)
        if not (upsample and self.upsamplers):
            return base
        return torch.cat([self.upsample(row[None], self.generator(seed)) for row in base])

    def interpolate(
        self,
        image_a: Image.Image | str | Path,
        image_b: Image.Image | str | Path,
        steps: int = 5,
        x_T: Literal["fixed", "slerp"] = "fixed",
        seed: int = 0,
    ) -> list[Image.Image]:
        """Slerp between two images' CLIP embeddings (unCLIP §3.2). ``x_T="fixed"`` shares one
        random decoder latent along the path; ``"slerp"`` slerps the two DDIM-inverted latents,
        so the endpoints are the inputs' reconstructions."""
        if steps < 2:
            raise InputError(f"interpolate needs at least 2 steps, got {steps}")
        if x_T not in ("fixed", "slerp"):
            raise InputError(f"x_T must be 'fixed' or 'slerp', got {x_T!r}")
        thetas = torch.linspace(0, 1, steps)
        if x_T == "slerp":
            (z_a, xa), (z_b, xb) = self.invert(image_a), self.invert(image_b)
            flat_a, flat_b = xa.flatten(1), xb.flatten(1)
            latents = [slerp(flat_a, flat_b, float(t)).reshape(xa.shape) for t in thetas]
        else:
            z_a = self.encode_image([load_image(image_a)])
            z_b = self.encode_image([load_image(image_b)])
            noise = torch.randn(
                (1, self.decoder.in_channels, self.base_size, self.base_size),
                generator=self.generator(seed),
                device=self.device,
            )
            latents = [noise] * steps
        embeds = torch.cat([slerp(z_a, z_b, float(t)) for t in thetas])
        return tensor_to_pil(self.decode_latent(embeds, torch.cat(latents), seed=seed))

    def text_diff(
        self,
        image: Image.Image | str | Path,
        from_caption: str,
        to_caption: str,
        thetas: Sequence[float] = (0.0, 0.25, 0.5),
        seed: int = 0,
    ) -> list[Image.Image]:
        """Edit an image towards a caption change (unCLIP §3.3): z_d = normalize(z_t1 − z_t0),
        decode slerp(z_i, z_d, θ) from the image's fixed DDIM-inverted latent."""
        self._check_prompts(
            [from_caption, to_caption], names=["from_caption", "to_caption"], hint="describe the image before and after the edit"
        )
        thetas = [float(theta) for theta in thetas]
        if not thetas:
            raise InputError("text_diff needs at least one theta")
        if any(not 0 <= theta <= 1 for theta in thetas):  # also refuses nan
            raise InputError(f"thetas must be numbers in [0, 1], got {thetas}")
        z_i, x_T = self.invert(image)
        text = self.encode_text([from_caption, to_caption])
        z_d = text_diff_direction(text.embed[0:1].float(), text.embed[1:2].float())
        embeds = torch.cat([slerp(z_i, z_d, float(theta)) for theta in thetas])
        return tensor_to_pil(self.decode_latent(embeds, x_T.repeat(len(thetas), 1, 1, 1), seed=seed))

    def classify(self, image: Image.Image | str | Path, labels: Sequence[str]) -> dict[str, float]:
        """Zero-shot classification: softmax over CLIP similarities to each label."""
        labels = self._check_prompts(labels, what="label", hint="each label is a caption to score the image against")
        if len(labels) < 2:  # a softmax over one label is 100% whatever the image
            raise InputError("give at least two labels to choose between")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:  # the result maps label → probability, so a repeat would hide its share
            raise InputError(f"each label must be given once; repeated: {', '.join(map(repr, repeated))}")
        z_i = self.encode_image([load_image(image)])
        z_t = self.encode_text(labels).embed.float()
        logits = self.encoder.logit_scale.float().to(z_i.device) * z_i @ z_t.T
        probs = logits.softmax(dim=-1)[0]
        return {label: float(p) for label, p in zip(labels, probs)}

    def rerank(self, images: Sequence[Image.Image | str | Path], prompt: str) -> list[tuple[int, float]]:
        """``(index, cosine similarity)`` of each image to the prompt, best first (unCLIP's
        CLIP reranking of samples)."""
        self._check_prompts([prompt])
        if not images:
            raise InputError("no images to rerank")
        z_i = self.encode_image([load_image(image) for image in images])
        z_t = self.encode_text([prompt]).embed.float()
        scores = (z_i @ z_t.T)[:, 0].tolist()
        return sorted(enumerate(scores), key=lambda item: -item[1])
