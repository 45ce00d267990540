"""The server's one model worker: a bounded queue, and generate requests batched.

One thread runs every model call (the models are not shared between threads, and one batch
uses the CPU's cores better than several small ones fighting over them). Requests wait in a
queue of bounded length — a full queue is refused at once (:class:`QueueFull`, a 503), so
memory stays bounded however many clients connect. When the worker takes a generate request
it waits ``window_s`` for more and takes every queued generate request with the same recipe
and overrides, up to ``max_batch_images`` images, and runs them as ONE batch: prompts side by
side, and each request's noise drawn from its own seed
(:class:`~unclip_core.diffusion.row_generators.RowGenerators`), so each gets the images it
would get alone. A batch that fails (a recipe whose components cannot draw per-request noise,
say) is run again one request at a time, so one request's error is never another's.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from unclip_core.errors import UnclipError
from unclip_core.images import png_bytes, tensor_to_pil
from unclip_core.interfaces import StepInfo
from unclip_core.serve import operations, schemas
from unclip_core.serve.pipelines import Key, PipelineCache


class QueueFull(UnclipError):
    """The queue is at its bound; the client should retry later (HTTP 503)."""


@dataclass
class Progress:
    """What a job's page shows while it runs: the stage, its step, and the decoder's x̂₀."""

    state: str = "queued"
    stage: str | None = None
    step: int = 0
    total: int = 0
    preview: bytes | None = None


@dataclass
class Job:
    request: schemas._Request
    uploads: dict[str, Image.Image]
    key: Key
    preview: bool = False
    future: Future = field(default_factory=Future)
    progress: Progress = field(default_factory=Progress)
    id: str = ""

    @property
    def batchable(self) -> bool:
        return isinstance(self.request, schemas.GenerateRequest)

    @property
    def images(self) -> int:
        return int(getattr(self.request, "n", 1))


class Worker:
    def __init__(
        self,
        pipelines: PipelineCache,
        *,
        max_queue: int = 32,
        window_s: float = 0.02,
        max_batch_images: int = 32,
        kept_jobs: int = 64,
    ):
        self.pipelines = pipelines
        self.max_queue, self.window_s, self.max_batch_images = max_queue, window_s, max_batch_images
        self._queue: deque[Job] = deque()
        self._ready = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._kept_jobs = kept_jobs
        self._ids = itertools.count(1)
        self.batches: list[int] = []
        """Requests per batch run, most recent last (bounded; for tests and the benchmark)."""
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="unclip-serve-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ clients
    def submit(self, job: Job) -> Job:
        """Queue ``job``, or :class:`QueueFull` when ``max_queue`` jobs are already waiting."""
        with self._ready:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the server is busy ({self.max_queue} requests waiting); try again shortly")
            job.id = f"{next(self._ids)}"
            self._jobs[job.id] = job
            while len(self._jobs) > self._kept_jobs:  # forget the oldest finished jobs
                oldest = next((key for key, old in self._jobs.items() if old.future.done()), None)
                if oldest is None:
                    break
                del self._jobs[oldest]
            self._queue.append(job)
            self._ready.notify()
        return job

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ worker
    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopped:
                    self._ready.wait()
                if self._stopped:
                    return
                first = self._queue.popleft()
            batch = [first]
            if first.batchable:
                time.sleep(self.window_s)  # let concurrent clients' requests arrive
                batch += self._take_compatible(first)
            self.batches = [*self.batches[-999:], len(batch)]
            self._run(batch)

    def _take_compatible(self, first: Job) -> list[Job]:
        taken, images = [], first.images
        with self._ready:
            for job in list(self._queue):
                if job.batchable and job.key == first.key and images + job.images <= self.max_batch_images:
                    self._queue.remove(job)
                    taken.append(job)
                    images += job.images
        return taken

    def _run(self, batch: list[Job]) -> None:
        for job in batch:
            job.progress.state = "running"
        try:
            pipeline = self.pipelines.get(batch[0].key)
            if batch[0].batchable:
                results = self._generate(pipeline, batch)
            else:
                results = [operations.run(pipeline, batch[0].request, batch[0].key[1], batch[0].uploads)]
        except Exception as exc:  # noqa: BLE001 - handed to the request's own future
            if len(batch) > 1:  # one request's trouble must not become another's
                for job in batch:
                    self._run([job])
                return
            self._finish(batch[0], error=exc)
            return
        for job, result in zip(batch, results):
            self._finish(job, result=result)

    def _generate(self, pipeline: Any, batch: list[Job]) -> list[operations.Result]:
        from unclip_core.batch.requests import generate_requests

        requests: list[schemas.GenerateRequest] = [job.request for job in batch]  # type: ignore[misc]
        on_step = self._progress_hook(batch)
        asks = [(request.prompt, request.n, request.seed) for request in requests]
        tensors = generate_requests(pipeline, asks, on_step=on_step)
        images = tensor_to_pil(tensors)
        results, start = [], 0
        for request in requests:
            results.append(operations.generate_result(pipeline, request, batch[0].key[1], images[start : start + request.n]))
            start += request.n
        return results

    def _progress_hook(self, batch: list[Job]):  # noqa: ANN202
        offsets = list(itertools.accumulate([0] + [job.images for job in batch]))

        def on_step(stage: str, info: StepInfo) -> None:
            for job, start in zip(batch, offsets):
                progress = job.progress
                progress.stage, progress.step, progress.total = stage, info.index + 1, info.total
                if job.preview and stage == "decoder" and info.x0 is not None and info.x0.shape[0] == offsets[-1]:
                    progress.preview = png_bytes(tensor_to_pil(info.x0[start : start + 1].float())[0])

        return on_step

    def _finish(self, job: Job, *, result: operations.Result | None = None, error: BaseException | None = None) -> None:
        if error is not None:
            job.progress.state = "error"
            job.future.set_exception(error)
        else:
            job.progress.state = "done"
            job.future.set_result(result)
