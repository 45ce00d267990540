"""The autoencoder's contract: latents of the declared size, images back at the input's size,
the same encoding every call (a generator only where the encoding is a distribution)."""
from __future__ import annotations

import torch

from unclip_core.contracts._support import _differ, _generator, _label, _require
from unclip_core.interfaces import Autoencoder


def check_autoencoder(autoencoder: Autoencoder, side: int | None = None) -> None:
    """``encode`` gives ``[B, latent_channels, s / downscale, s / downscale]`` finite latents,
    the same ones on every call without a generator and with equal-seeded ones; ``decode``
    gives ``[B, 3, s, s]`` finite images that depend on the latents."""
    label = _label(autoencoder)
    channels, downscale = autoencoder.latent_channels, autoencoder.downscale
    _require(channels >= 1 and downscale >= 1, label, f"declares latent_channels {channels} and downscale {downscale}")
    side = side or 4 * downscale
    images = torch.rand(2, 3, side, side, generator=_generator(3)).mul(2).sub(1).to(autoencoder.device)
    with torch.no_grad():
        latents = autoencoder.encode(images)
        expected = (2, channels, side // downscale, side // downscale)
        _require(tuple(latents.shape) == expected, label, f"encode gave {tuple(latents.shape)}, expected {expected}")
        _require(bool(torch.isfinite(latents).all()), label, "encode gave non-finite latents")
        _require(torch.equal(latents, autoencoder.encode(images)), label, "encode without a generator is not deterministic")
        seeded = [autoencoder.encode(images, _generator(5)) for _ in range(2)]
        _require(torch.equal(*seeded), label, "encode with equal-seeded generators differs")
        decoded = autoencoder.decode(latents)
        _require(tuple(decoded.shape) == (2, 3, side, side), label, f"decode gave {tuple(decoded.shape)}, expected (2, 3, {side}, {side})")
        _require(bool(torch.isfinite(decoded).all()), label, "decode gave non-finite images")
        _require(_differ(decoded, autoencoder.decode(-latents)), label, "decode does not depend on the latents")
