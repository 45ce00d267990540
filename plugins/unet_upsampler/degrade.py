"""Corruptions applied to an upsampler's conditioning image in training (unCLIP §2.2 / App.).

"To improve the robustness of our upsamplers, we slightly corrupt the conditioning images
during training. For the first upsampling stage we use gaussian blur, and for the second, we
use a more diverse BSR degradation." An upsampler trained only on clean downsampled images
learns to trust every pixel of its input, and then reproduces the previous stage's small
artefacts; corrupting the input teaches it to ignore them.

All functions take and return float images ``[B, 3, H, W]`` in [-1, 1] and draw every random
choice from the ``generator`` they are given, so the same seed gives the same corruption.
Blur widths are given in *low-resolution* pixels (the size the image ends at), so one
setting means the same thing for a 4× and an 8× upsampler.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor

RESIZE_MODES = ("bilinear", "bicubic", "area")
"""Interpolation kernels BSR chooses among (BSRGAN's linear, cubic and area)."""

BSR_RESIZE_SCALE = (0.5, 1.5)
"""Range of the intermediate resize BSR applies, relative to the current side."""


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """``count`` draws from U(low, high), on the CPU (they become Python numbers)."""
    draws = torch.rand(count, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    return low + (high - low) * draws


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """One integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device).item())


# ------------------------------------------------------------------ elementary operations
def kernel_size_for(sigma: float, limit: int) -> int:
    """Odd Gaussian kernel width covering ±3σ, at most ``limit`` (reflect padding needs the
    kernel's half-width to stay below the image side)."""
    size = 2 * math.ceil(3 * sigma) + 1
    largest = limit if limit % 2 else limit - 1
    return max(1, min(size, largest))


def gaussian_blur(images: Tensor, sigmas: Tensor) -> Tensor:
    """Blur each image with its own Gaussian: ``sigmas`` ``[B]`` (isotropic) or ``[B, 2]``
    (per axis, x then y) in pixels of ``images``. Borders are reflected (torchvision's
    ``gaussian_blur``)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
    if sigmas.ndim == 1:
        sigmas = sigmas[:, None].expand(-1, 2)
    height, width = images.shape[-2:]
    out = []
    for image, (sigma_x, sigma_y) in zip(images, sigmas.tolist()):
        if sigma_x <= 0 and sigma_y <= 0:
            out.append(image)
            continue
        sigma_x, sigma_y = max(sigma_x, 1e-3), max(sigma_y, 1e-3)
        kernel = [kernel_size_for(sigma_x, 2 * width - 1), kernel_size_for(sigma_y, 2 * height - 1)]
        out.append(TF.gaussian_blur(image[None], kernel, [sigma_x, sigma_y])[0])
    return torch.stack(out)


def resize(images: Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> Tensor:
    """Resize to ``size`` with ``mode`` (antialiased where torch supports it, so
    downsampling does not alias)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)
    return F.interpolate(images, size=size, mode=mode)


def add_gaussian_noise(images: Tensor, stds: Tensor, generator: torch.Generator, *, gray: Tensor | None = None) -> Tensor:
    """Add zero-mean Gaussian noise of std ``stds[b]`` (as a fraction of the [0, 1] range,
    i.e. twice that in [-1, 1]); where ``gray[b]`` the same noise goes to all channels, as a
    camera's luminance noise."""
    batch, channels, height, width = images.shape
    noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=torch.float32)
    if gray is not None:
        shared = noise[:, :1].expand(-1, channels, -1, -1)
        noise = torch.where(gray.to(noise.device)[:, None, None, None], shared, noise)
    scale = (2.0 * torch.as_tensor(stds, dtype=torch.float32)).reshape(batch, 1, 1, 1)
    return images + (noise * scale.to(noise.device)).to(device=images.device, dtype=images.dtype)


def jpeg_round_trip(images: Tensor, qualities: Sequence[int]) -> Tensor:
    """Encode each image as a JPEG of the given quality with PIL and decode it again."""
    out = []
    for image, quality in zip(images, qualities):
        pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
        out.append(torch.from_numpy(decoded).permute(2, 0, 1) / 127.5 - 1)
    return torch.stack(out).to(device=images.device, dtype=images.dtype)


# ------------------------------------------------------------------ the two recipes
def blur_degradation(
    images: Tensor, out_size: int, sigma_range: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """unCLIP's first-stage corruption: a Gaussian blur of random width (``sigma_range`` in
    pixels at ``out_size``), then an antialiased bicubic downsample to ``out_size``."""
    scale = images.shape[-1] / out_size
    sigmas = _uniform(images.shape[0], *sigma_range, generator) * scale
    return resize(gaussian_blur(images, sigmas), out_size).clamp(-1, 1)


def bsr_degradation(
    images: Tensor,
    out_size: int,
    generator: torch.Generator,
    *,
    sigma_range: tuple[float, float],
    noise_std_range: tuple[float, float],
    jpeg_quality_range: tuple[int, int],
) -> Tensor:
    """A BSR-style corruption (Zhang et al. 2021, "Designing a practical degradation model for
    deep blind image super-resolution"), per image: a blur (independent σ per axis), a resize
    by a random factor with a random kernel, Gaussian noise (colour or luminance) and a JPEG
    round trip, **in a random order**, then a resize to ``out_size`` with a random kernel."""
    out = []
    for image in images:
        x = image[None]
        for step in torch.randperm(4, generator=generator, device=generator.device).tolist():
            if step == 0:
                per_pixel = x.shape[-1] / out_size
                sigmas = _uniform(2, *sigma_range, generator) * per_pixel
                x = gaussian_blur(x, sigmas[None])
            elif step == 1:
                factor = float(_uniform(1, *BSR_RESIZE_SCALE, generator))
                side = max(round(x.shape[-1] * factor), max(out_size // 2, 1))
                x = resize(x, side, RESIZE_MODES[_randint(0, len(RESIZE_MODES) - 1, generator)])
            elif step == 2:
                std = _uniform(1, *noise_std_range, generator)
                gray = _uniform(1, 0.0, 1.0, generator) < 0.5
                x = add_gaussian_noise(x, std, generator, gray=gray)
            else:
                x = jpeg_round_trip(x, [_randint(*jpeg_quality_range, generator)])
        x = resize(x, out_size, RESIZE_MODES[_randint(0, len(RESIZE_MODES) - 1, generator)])
        out.append(x[0].clamp(-1, 1))
    return torch.stack(out)
