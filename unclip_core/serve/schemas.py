"""The JSON API's request bodies (API version 1), checked with pydantic, and uploads decoded
with the same checks as the CLI's image files.

A bad field is one line (``n: must be at most 16``), as the CLI would print it; the server
answers it with a 400 and keeps serving.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unclip_core.cli.limits import SEED_MAX, TEXT_ARGUMENTS, check_seed, check_text
from unclip_core.errors import InputError
from unclip_core.images import load_image_bytes

API_VERSION = 1
MAX_IMAGES = 16
"""The most images one request may ask for (bounds the memory one request can take)."""
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_BODY_BYTES = 2 * (MAX_UPLOAD_BYTES * 4 // 3) + 1024 * 1024
"""Two uploads at their limit, base64-encoded, and room for the rest: a larger body is refused
while it arrives, before it is all in memory."""


class BodyTooLarge(InputError):
    """A request body over :data:`MAX_BODY_BYTES` (HTTP 413)."""

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,", re.ASCII)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipe: str | None = Field(None, description="one of the recipes the server was started with (default: the first)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="random seed: same seed, same images")
    overrides: list[str] = Field(default_factory=list, description="recipe overrides, KEY=VALUE, as on the command line")


class GenerateRequest(_Request):
    prompt: str = Field(description="the caption")
    n: int = Field(1, ge=1, le=MAX_IMAGES, description="images to generate")


class VaryRequest(_Request):
    image: str = Field(description="the image, as a data: URL or bare base64")
    n: int = Field(4, ge=1, le=MAX_IMAGES)
    eta: float = Field(1.0, ge=0, le=1, description="DDIM eta: 0 = deterministic, 1 = DDPM-like")


class InterpolateRequest(_Request):
    image_a: str
    image_b: str
    steps: int = Field(5, ge=2, le=MAX_IMAGES, description="frames, ends included")
    x_t: Literal["fixed", "slerp"] = "fixed"


class TextDiffRequest(_Request):
    image: str
    from_caption: str
    to_caption: str
    thetas: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], min_length=1, max_length=MAX_IMAGES)


class InpaintRequest(_Request):
    image: str
    mask: str = Field(description="white = repaint, black = keep; the image's proportions")
    prompt: str
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    resample: int = Field(1, ge=1, le=20)


REQUESTS: dict[str, type[_Request]] = {
    "generate": GenerateRequest,
    "vary": VaryRequest,
    "interpolate": InterpolateRequest,
    "textdiff": TextDiffRequest,
    "inpaint": InpaintRequest,
}


def parse_request(operation: str, body: Any) -> _Request:
    """The checked request, or an :class:`InputError` naming the first bad field in one line."""
    if not isinstance(body, dict):
        raise InputError(f"the request body must be a JSON object, got {type(body).__name__}")
    if "seed" in body:  # the CLI's limit and words
        check_seed(body["seed"], "seed")
    try:
        checked = REQUESTS[operation].model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"][0].lower() + error["msg"][1:]
        bounds = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le")}
        if error["type"] in bounds:  # the CLI's words: "n must be at least 1, got 0"
            words, bound = bounds[error["type"]]
            raise InputError(f"{where} must be {words} {error['ctx'][bound]}, got {error['input']}") from None
        if error["type"] == "extra_forbidden":
            message = f"unknown field; {operation} takes {', '.join(REQUESTS[operation].model_fields)}"
        raise InputError(f"{where}: {message}") from None
    for name in TEXT_ARGUMENTS:
        if isinstance(getattr(checked, name, None), str):
            check_text(getattr(checked, name), name)
    return checked


def decode_upload(value: str, name: str) -> Image.Image:
    """An uploaded image (a ``data:`` URL or bare base64) as RGB, with the CLI's checks: a
    non-image or an image over the pixel limit (a decompression bomb) is one line naming ``name``."""
    payload = _DATA_URL.sub("", value.strip(), count=1)
    if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise InputError(f"{name} is too large (over {MAX_UPLOAD_BYTES // 2**20} MiB)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name} is not base64 image data (send a data: URL or base64 of the file)") from None
    return load_image_bytes(data, name)
