"""Training-free inpainting for any decoder and upsampler: RePaint (Lugmayr et al. 2022).

Why training-free: a diffusion model trained on whole images can still fill a hole if,
at every step, the part of the image that is known is put back at the noise level the
model is working at. RePaint does exactly that: before each model call at timestep t the
known region (mask black) is replaced by ``q_sample(known image, t)`` with fresh noise, so
the model sees a consistent noisy image and harmonises the hole (mask white) with it.

It is written as a *sampler wrapper* so it works with every sampler, built-in or plugin:
the blending happens in the denoiser the sampler is given (:class:`KnownRegionDenoiser`).
Samplers only combine a model output with the sample elementwise, so blending the model's
input at t is the same as blending the sample RePaint keeps after each step at t−1 (the
known part of the sampler's own state is never read for the hole, and is pasted over at
the end).

RePaint's resampling (``resample`` > 1) also goes *back*: each step is taken ``resample``
times, and between takes the sample is sent back to the step's starting noise level with
fresh noise, ``x_t = √(ᾱ_t/ᾱ_prev) x_prev + √(1 − ᾱ_t/ᾱ_prev) z`` (jumps of one step).
That needs a sampler that can take one step at a time — one exposing ``timestep_pairs`` and
``step``, as the built-in DDPM and DDIM samplers do — and is refused with a clear error for
the others (multistep solvers keep a history that a jump back would break).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_core.diffusion.noise import gaussian, initial_noise
from unclip_core.diffusion.parameterization import q_sample
from unclip_core.errors import InputError
from unclip_core.images import load_image, pil_to_tensor, resize_tensor
from unclip_core.interfaces import Denoiser, Sampler, StepCallback, StepInfo

ImageInput = Image.Image | str | Path | Tensor
ASPECT_TOLERANCE = 0.01
"""Relative difference allowed between the image's and the mask's width/height ratios (rounding)."""


def _read_mask(mask: Any) -> Tensor:
    """``[H, W]`` bool, True where the mask asks for repainting (white, or 1 in a tensor)."""
    if isinstance(mask, Tensor):
        values = mask.detach().cpu()
        while values.ndim > 2 and values.shape[0] == 1:
            values = values[0]
        if values.ndim != 2:
            raise InputError(f"mask tensor must be [H, W], [1, H, W] or [1, 1, H, W], got {list(mask.shape)}")
        if values.dtype == torch.bool:
            return values
        values = values.double()
        if values.numel() and (values.min() < 0 or values.max() > 1):
            raise InputError("mask tensor values must be in [0, 1] (1 = repaint, 0 = keep)")
        return values > 0.5
    if isinstance(mask, (str, Path, Image.Image)):
        try:
            image = load_image(mask)  # transparent pixels become white: repaint
        except InputError as exc:
            raise InputError(f"mask: {exc}") from None
        return torch.from_numpy(np.asarray(image.convert("L")) > 127)
    raise InputError(f"mask must be an image file, a PIL image or a tensor, got {type(mask).__name__}")


def _read_image(image: ImageInput) -> Image.Image | Tensor:
    if isinstance(image, Tensor):
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise InputError(f"image tensor must be [3, H, W] or [1, 3, H, W] in [-1, 1], got {list(image.shape)}")
        return image.detach().float().cpu()
    return load_image(image)


def _square(width: int, height: int) -> tuple[int, int, int]:
    """``(left, top, side)`` of the centred square, as :func:`~unclip_core.images.pil_to_tensor` crops."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


@dataclass(frozen=True)
class InpaintRegion:
    """An image and its mask, both cropped to the centred square the stack works on, and
    served at any stage's size: the known pixels by the same resize as every other input
    image (bicubic), the mask by nearest neighbour so it stays binary."""

    image: Image.Image | Tensor
    """The input: an RGB PIL image, or ``[1, 3, H, W]`` in [-1, 1]."""
    mask: Tensor
    """``[h, w]`` bool at the mask's own resolution, centre-cropped; True = repaint."""

    @classmethod
    def from_inputs(cls, image: ImageInput, mask: Any) -> "InpaintRegion":
        """Read and check both (one-line :class:`InputError` for anything unusable)."""
        picture = _read_image(image)
        repaint = _read_mask(mask)
        width, height = picture.size if isinstance(picture, Image.Image) else (picture.shape[-1], picture.shape[-2])
        mask_height, mask_width = repaint.shape
        ratio, mask_ratio = width / height, mask_width / mask_height
        if abs(mask_ratio - ratio) > ASPECT_TOLERANCE * ratio:
            raise InputError(
                f"mask is {mask_width}×{mask_height} but the image is {width}×{height}: their proportions differ "
                f"({mask_ratio:.3g} vs {ratio:.3g}); give a mask of the image's shape"
            )
        left, top, side = _square(mask_width, mask_height)
        repaint = repaint[top : top + side, left : left + side]
        if not bool(repaint.any()):
            where = "" if mask_width == mask_height else " inside the centred square the image is cropped to"
            raise InputError(f"mask has no white pixels{where}: nothing to repaint (white marks the region to repaint)")
        if isinstance(picture, Tensor):
            left, top, side = _square(width, height)
            picture = picture[..., top : top + side, left : left + side]
        return cls(picture, repaint)

    def known(self, size: int, device: torch.device | str = "cpu") -> Tensor:
        """``[1, 3, size, size]`` in [-1, 1]: the input at that size."""
        if isinstance(self.image, Image.Image):
            return pil_to_tensor([self.image], size).to(device)
        return resize_tensor(self.image, size).to(device)

    def repaint_mask(self, size: int, device: torch.device | str = "cpu") -> Tensor:
        """``[1, 1, size, size]`` bool, True = repaint (nearest-neighbour resize)."""
        mask = self.mask[None, None].float()
        if mask.shape[-1] != size:
            mask = F.interpolate(mask, size=(size, size), mode="nearest-exact")
        return (mask > 0.5).to(device)

    def latent_repaint_mask(self, size: int, downscale: int, device: torch.device | str = "cpu") -> Tensor:
        """``[1, 1, size / downscale, size / downscale]`` bool for an autoencoder's latents: a
        latent cell is repainted if any pixel of the ``downscale × downscale`` patch it encodes
        is, so only latents of wholly known patches are held to the known image."""
        mask = self.repaint_mask(size, device).float()
        return F.max_pool2d(mask, kernel_size=downscale) > 0.5

    def paste(self, images: Tensor) -> Tensor:
        """``images`` with the known region replaced by the input at their size, exactly."""
        size = images.shape[-1]
        known = self.known(size, images.device).to(images.dtype)
        return torch.where(self.repaint_mask(size, images.device), images, known)

    def sampler(self, inner: Sampler, size: int, resample: int, stage: str, device: torch.device | str) -> "RePaintSampler":
        """A RePaint wrapper of ``inner`` for a stage of side ``size`` (``stage`` names it in errors)."""
        return RePaintSampler(inner, self.known(size, device), self.repaint_mask(size, device), resample, stage=stage)


class KnownRegionDenoiser:
    """``denoiser`` asked about ``x_t`` with the known region replaced by the known image
    noised to t (``q_sample`` with fresh noise from ``generator``), so the model always
    sees a consistent noisy image; the hole is left as the sampler has it."""

    def __init__(self, denoiser: Denoiser, known: Tensor, repaint: Tensor, generator: torch.Generator):
        self.inner, self.known, self.repaint, self.generator = denoiser, known, repaint, generator
        for name in ("prediction_type", "variance_type", "schedule", "clip_range", "device", "dtype"):
            setattr(self, name, getattr(denoiser, name))

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        noise = gaussian(x_t.shape, self.generator, x_t.dtype, x_t.device)
        known_t = q_sample(self.schedule, self.known.to(device=x_t.device, dtype=x_t.dtype), t.cpu(), noise)
        return self.inner(torch.where(self.repaint.to(x_t.device), x_t, known_t), t)


class RePaintSampler(Sampler):
    """Any sampler, made to keep the known region of an image (RePaint); see the module."""

    def __init__(self, inner: Sampler, known: Tensor, repaint: Tensor, resample: int = 1, *, stage: str = "decoder"):
        super().__init__(inner.config)  # same settings (steps), so progress bars count the same
        if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
            raise InputError(f"resample must be a whole number of at least 1, got {resample!r}")
        if resample > 1 and not (callable(getattr(inner, "step", None)) and callable(getattr(inner, "timestep_pairs", None))):
            raise InputError(
                f"inpaint: resample={resample} needs a sampler that takes single steps (DDPM- or DDIM-style: step() and "
                f"timestep_pairs()), but the {stage} sampler ({type(inner).__name__}) cannot; use resample=1 or another "
                f"{stage}.sampler.type"
            )
        self.inner, self.known, self.repaint, self.resample = inner, known, repaint, resample

    def sample(
        self,
        denoiser: Denoiser,
        shape: Sequence[int],
        *,
        generator: torch.Generator,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """The inner sampler's run with the known region re-noised before every model call,
        and pasted into the result. Callbacks see x0 with the known region in place."""
        if tuple(shape[-2:]) != tuple(self.repaint.shape[-2:]) or shape[1] != self.known.shape[1]:
            raise InputError(f"inpaint: the mask is for {list(self.known.shape[1:])} samples, the stage makes {list(shape[1:])}")
        blended = KnownRegionDenoiser(denoiser, self.known, self.repaint, generator)
        known = self.known.to(device=denoiser.device, dtype=denoiser.dtype)
        repaint = self.repaint.to(denoiser.device)

        def report(info: StepInfo) -> None:
            if info.x0 is not None:
                info.x0 = torch.where(repaint, info.x0, known)
            callback(info)  # type: ignore[misc]

        hook = report if callback is not None else None
        if self.resample == 1:
            x = self.inner.sample(blended, shape, generator=generator, x_T=x_T, callback=hook)
        else:
            x = self._resampled(blended, shape, generator, x_T, hook)
        return torch.where(repaint, x, known.to(x.dtype))

    def _resampled(
        self, denoiser: KnownRegionDenoiser, shape: Sequence[int], generator: torch.Generator, x_T: Tensor | None, callback: StepCallback | None
    ) -> Tensor:
        """RePaint's loop with jumps of one step: each step taken ``resample`` times."""
        inner: Any = self.inner
        schedule = denoiser.schedule
        x = initial_noise(shape, denoiser, generator, x_T)
        pairs = inner.timestep_pairs(denoiser)
        for index, (t, t_prev) in enumerate(pairs):
            for take in range(self.resample):
                x_prev, x0 = inner.step(denoiser, x, t, t_prev, generator=generator)
                if take + 1 < self.resample:  # back to t: q(x_t | x_prev) of the respaced chain
                    keep = float(schedule.alpha_bar(t) / schedule.alpha_bar(t_prev))
                    x = keep**0.5 * x_prev + (1 - keep) ** 0.5 * gaussian(x.shape, generator, x.dtype, x.device)
            x = x_prev
            if callback is not None:
                callback(StepInfo(index, len(pairs), t, x, x0))
        return x
