"""The FastAPI application: the page at ``/``, the JSON API under ``/api`` (OpenAPI at
``/openapi.json``, browsable at ``/docs``).

Every error a client can cause is a 4xx whose body is ``{"error": "<one line>"}``, the line
the CLI would print after ``unclip: error:``; a full queue is a 503. The worker thread keeps
serving whatever one request did.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from unclip_core import __version__
from unclip_core.cli.main import _user_message
from unclip_core.errors import InputError
from unclip_core.serve import schemas
from unclip_core.serve.batching import Job, QueueFull, Worker
from unclip_core.serve.operations import data_url
from unclip_core.serve.pipelines import PipelineCache

UPLOADS = {"vary": ("image",), "interpolate": ("image_a", "image_b"), "textdiff": ("image",), "inpaint": ("image", "mask")}


def create_app(
    recipes: Sequence[str] = ("shapes",), *, overrides: Sequence[str] = (), worker: Worker | None = None, **worker_settings: Any
) -> FastAPI:
    """The app serving ``recipes`` (built now, with ``overrides``; the first is the default);
    ``worker_settings``: :class:`~unclip_core.serve.batching.Worker`'s queue and batching settings."""
    worker = worker or Worker(PipelineCache(recipes, overrides), **worker_settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="unclip serve",
        version=f"{schemas.API_VERSION}",
        description=f"unCLIP image generation (unclip {__version__}). Errors: `{{\"error\": \"one line\"}}`.",
    )
    app.state.worker = worker

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("unclip_core.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """The served recipes and how they run."""
        pipeline = worker.pipelines.default
        return {
            "api_version": schemas.API_VERSION,
            "unclip_version": __version__,
            "recipe": worker.pipelines.recipes[0],
            "recipes": worker.pipelines.recipes,
            "device": pipeline.settings.device,
            "precision": pipeline.settings.precision,
            "image_size": pipeline.image_size,
            "max_images": schemas.MAX_IMAGES,
            "steps": _steps(pipeline),
            "guidance": {"prior": pipeline.settings.prior_guidance_scale, "decoder": pipeline.settings.decoder_guidance_scale},
        }

    for operation, model in schemas.REQUESTS.items():
        _add_operation(app, worker, operation, model)

    @app.get("/api/jobs/{job_id}")
    def job_state(job_id: str) -> JSONResponse:
        """A job's progress (stage, step of total, the decoder's x̂₀ preview), then its result."""
        job = worker.job(job_id)
        if job is None:
            return _error(404, f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)")
        progress = job.progress
        body: dict[str, Any] = {"state": progress.state, "stage": progress.stage, "step": progress.step, "total": progress.total}
        if progress.preview is not None:
            body["preview"] = data_url(progress.preview, "image/png")
        if job.future.done():
            error = job.future.exception()
            if error is None:
                body["result"] = job.future.result().to_json()
            else:
                body["error"] = _message(error)
        return JSONResponse(body)

    return app


def _steps(pipeline: Any) -> dict[str, int | None]:
    stages = {"prior": pipeline.prior_sampler, "decoder": pipeline.decoder_sampler}
    return {name: getattr(getattr(sampler, "config", None), "steps", None) for name, sampler in stages.items()}


def _add_operation(app: FastAPI, worker: Worker, operation: str, model: type) -> None:
    body_schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}

    async def submit(request: Request, preview: bool) -> Job:
        try:
            body = json.loads(await _read_body(request))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"the request body is not valid JSON ({exc})") from None
        checked = schemas.parse_request(operation, body)
        uploads = {name: schemas.decode_upload(getattr(checked, name), name) for name in UPLOADS.get(operation, ())}
        key = worker.pipelines.key(checked.recipe, checked.overrides)
        return worker.submit(Job(checked, uploads, key, preview=preview))

    async def run_now(request: Request) -> JSONResponse:
        try:
            job = await submit(request, preview=False)
            result = await asyncio.wrap_future(job.future)
            return JSONResponse(await asyncio.to_thread(result.to_json))
        except Exception as exc:  # noqa: BLE001
            return _error_for(exc)

    async def queue_job(request: Request) -> JSONResponse:
        try:
            job = await submit(request, preview=True)
        except Exception as exc:  # noqa: BLE001
            return _error_for(exc)
        return JSONResponse({"job": job.id}, status_code=202)

    run_now.__doc__ = f"Run {operation}; answers when the images are ready."
    queue_job.__doc__ = f"Queue {operation}; poll GET /api/jobs/{{job}} for progress and the result."
    app.post(f"/api/{operation}", name=operation, openapi_extra=body_schema)(run_now)
    app.post(f"/api/jobs/{operation}", name=f"{operation} (job)", status_code=202, openapi_extra=body_schema)(queue_job)


async def _read_body(request: Request) -> bytes:
    """The body, refused with :class:`~unclip_core.serve.schemas.BodyTooLarge` as soon as it
    passes the limit (a client's claimed or actual length), so memory stays bounded."""
    limit = schemas.MAX_BODY_BYTES
    too_large = f"the request body is too large (over {limit} bytes)"
    claimed = request.headers.get("content-length", "")
    if claimed.isdigit() and int(claimed) > limit:
        raise schemas.BodyTooLarge(too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise schemas.BodyTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _message(exc: BaseException) -> str:
    message = _user_message(exc) if isinstance(exc, Exception) else None
    return message if message is not None else f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _error_for(exc: Exception) -> JSONResponse:
    if isinstance(exc, QueueFull):
        return _error(503, str(exc))
    if isinstance(exc, schemas.BodyTooLarge):
        return _error(413, str(exc))
    return _error(400 if _user_message(exc) is not None else 500, _message(exc))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
