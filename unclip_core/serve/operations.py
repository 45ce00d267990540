"""Each API operation as a function of a pipeline and a checked request: the images, with
the reproduction metadata the CLI writes into its PNGs (:func:`unclip_core.cli.generate_cmd._metadata`),
so a PNG downloaded from the server is reproduced by ``unclip generate --from``."""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from PIL import Image

from unclip_core.cli.generate_cmd import _metadata
from unclip_core.images import gif_bytes, png_bytes
from unclip_core.pipeline import Pipeline
from unclip_core.serve import schemas


@dataclass
class Result:
    images: list[Image.Image]
    metadata: dict[str, Any]
    """What the CLI records for the whole run; each image's PNG adds its ``index`` when there are several."""
    gif: bool = False
    seeds: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        several = len(self.images) > 1
        pngs = [png_bytes(image, {**self.metadata, **({"index": i} if several else {})}) for i, image in enumerate(self.images)]
        body: dict[str, Any] = {"images": [data_url(png, "image/png") for png in pngs], "seeds": self.seeds}
        if self.gif:
            body["gif"] = data_url(gif_bytes(self.images), "image/gif")
        return body


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def metadata(pipeline: Pipeline, request: schemas._Request, overrides: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The CLI's metadata; ``overrides``: all that built ``pipeline`` (the server's and the request's)."""
    return _metadata(SimpleNamespace(overrides=list(overrides), seed=request.seed), pipeline, **extra)


def generate_result(
    pipeline: Pipeline, request: schemas.GenerateRequest, overrides: Sequence[str], images: list[Image.Image]
) -> Result:
    meta = metadata(pipeline, request, overrides, command="generate", prompt=request.prompt, n=request.n)
    return Result(images, meta, seeds=[request.seed] * len(images))


def run(pipeline: Pipeline, request: schemas._Request, overrides: Sequence[str], uploads: dict[str, Image.Image]) -> Result:
    """Every operation but generate (which :mod:`~unclip_core.serve.batching` batches)."""
    seed = request.seed
    if isinstance(request, schemas.VaryRequest):
        images = pipeline.variations(uploads["image"], n=request.n, seed=seed, eta=request.eta)
        meta = metadata(pipeline, request, overrides, command="vary", image="upload", eta=request.eta)
        return Result(images, meta, seeds=[seed] * len(images))
    if isinstance(request, schemas.InterpolateRequest):
        images = pipeline.interpolate(uploads["image_a"], uploads["image_b"], steps=request.steps, x_T=request.x_t, seed=seed)
        meta = metadata(pipeline, request, overrides, command="interpolate", images=["upload", "upload"], x_T=request.x_t)
        return Result(images, meta, gif=True, seeds=[seed] * len(images))
    if isinstance(request, schemas.TextDiffRequest):
        images = pipeline.text_diff(uploads["image"], request.from_caption, request.to_caption, thetas=request.thetas, seed=seed)
        captions = [request.from_caption, request.to_caption]
        meta = metadata(pipeline, request, overrides, command="textdiff", image="upload", captions=captions, thetas=request.thetas)
        return Result(images, meta, gif=True, seeds=[seed] * len(images))
    if isinstance(request, schemas.InpaintRequest):
        images = pipeline.inpaint(uploads["image"], uploads["mask"], request.prompt, n=request.n, seed=seed, resample=request.resample)
        meta = metadata(
            pipeline, request, overrides, command="inpaint", image="upload", mask="upload", prompt=request.prompt, n=request.n,
            resample=request.resample,
        )
        return Result(images, meta, seeds=[seed] * len(images))
    raise TypeError(f"no operation for {type(request).__name__}")
