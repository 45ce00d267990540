"""The training loop, in plain sight (after nanoGPT): one function per concern, one loop.

Determinism and exact resume come from two rules: the data order is a pure function of
``(seed, step)`` (each epoch is a seeded permutation), and every other random draw (timesteps,
noise, conditioning dropout, inpainting masks) comes from one ``torch.Generator`` whose state
is checkpointed.
So N steps, stop, resume, N steps gives the same weights as 2N steps in one go.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel and
each rank trains disjoint micro-batches of every global batch (numbered globally, each with
its own random stream: :mod:`unclip_core.training.distributed`); rank 0 alone writes
checkpoints, logs and samples. One process is the same code path with world size 1. A
streaming dataset (``shards``) replaces the index-based batches with each rank's own stream
(:mod:`unclip_core.training.data`).
"""
from __future__ import annotations

import copy
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unclip_core.errors import CheckpointError, UnclipError
from unclip_core.output_paths import check_writable
from unclip_core.recipe.assemble import build_component
from unclip_core.registry import Registry, default_registry
from unclip_core.training.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from unclip_core.training.data import (  # noqa: F401  (batch_indices, collate: public here too)
    MapBatches,
    StreamBatches,
    batch_indices,
    collate,
    first_items,
    is_streaming,
)
from unclip_core.training.distributed import Distributed, agree, init_distributed, micro_generator, wrap_for_training
from unclip_core.training.ema import EMA
from unclip_core.training.previews import preview
from unclip_core.training.embeddings import check_embedding_source, text_encoding
from unclip_core.training.stages import EmbeddingCache, LatentCache, stage_batch
from unclip_core.training.validate import ResolvedTraining
from unclip_core.atomic import remove_stale_temporaries
from unclip_core.weights import atomic_save_safetensors
import fnmatch
from tqdm.auto import tqdm

CHECKPOINT_NAME = "last.safetensors"
PREVIEW_ITEMS = 8


def lr_factor(step: int, total: int, warmup: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, then decay."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if decay == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if decay == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StopRequested:
    """SIGTERM / first Ctrl-C: finish the step, save, exit. A second Ctrl-C interrupts at once
    (the last checkpoint on disk is still whole: saves are atomic)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequested":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_folder(resolved: ResolvedTraining, override: str | Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(resolved.recipe.output.dir.format(name=resolved.recipe.name, stage=resolved.recipe.stage))


def export_weights(model: nn.Module, ema: EMA, path: Path, resolved: ResolvedTraining, step: int) -> Path:
    """The EMA weights as a plain safetensors file an inference recipe can name."""
    metadata = {
        "unclip_component": resolved.model.spec.name,
        "unclip_config": json.dumps(resolved.model.config.model_dump(mode="json"), sort_keys=True),
        "step": str(step),
        "recipe_digest": resolved.digest,
    }
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[resolved.recipe.output.export_dtype]
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    return atomic_save_safetensors(tensors, path, metadata)


def train(
    resolved: ResolvedTraining,
    *,
    registry: Registry | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one stage as its recipe says. ``max_steps`` stops early (for sessions and tests)
    without changing the schedule; ``resume`` continues from ``out_dir/last.safetensors``."""
    registry = registry or default_registry()
    recipe = resolved.recipe
    settings = recipe.train
    dist = init_distributed()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.batch_size % (dist.world_size * settings.accumulation):
        raise UnclipError(
            f"train.batch_size {settings.batch_size} is not divisible by world size {dist.world_size} "
            f"x train.accumulation {settings.accumulation}"
        )
    if max_steps is not None and max_steps < 1:
        raise UnclipError(f"--max-steps must be at least 1, got {max_steps}")
    out = check_writable(run_folder(resolved, out_dir), "run folder", folder=True)
    export = recipe.output.export
    if export:  # checked now: finding it unwritable after the training would waste the run
        if Path(export).suffix != ".safetensors":
            raise UnclipError(f"output.export must name a .safetensors file, got {export}")
        check_writable(resolved.base_dir / export, "output.export")
    checkpoint_path = out / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise UnclipError(f"{checkpoint_path} exists; pass --resume to continue that run, or choose another --out")
    if resume and not checkpoint_path.exists():
        raise CheckpointError(f"nothing to resume: {checkpoint_path} does not exist")
    if dist.is_main:  # a killed save leaves its temporary (13.8 MB for the shapes decoder) behind
        remove_stale_temporaries(out, [CHECKPOINT_NAME])

    torch.manual_seed(settings.seed)
    model = build_component(resolved.model, trainable=True).train()
    _freeze(model, settings.freeze)
    dataset = build_component(resolved.dataset)
    preview_sampler = build_component(resolved.preview_sampler) if resolved.preview_sampler else None
    streaming = is_streaming(dataset)
    if not streaming and len(dataset) == 0:
        raise UnclipError("the dataset is empty")
    precomputed = streaming and dataset.embedding_source() is not None
    if precomputed and resolved.encoder is not None:
        check_embedding_source(dataset.embedding_source(), resolved.encoder)
    needs_encoder = resolved.encoder is not None and not precomputed
    encoder = build_component(resolved.encoder) if needs_encoder else None
    # A stream never repeats an item within an epoch and may not fit in memory: no cache.
    cache = EmbeddingCache(encoder, settings.cache_embeddings and not streaming) if encoder is not None else None
    latents = None
    if resolved.autoencoder is not None:  # a latent decoder: the frozen autoencoder's latents, encoded once
        latents = LatentCache(build_component(resolved.autoencoder), int(model.declared.image_size),
                              settings.cache_embeddings and not streaming)

    parameters = [p for p in model.parameters() if p.requires_grad]
    optim = recipe.optim
    optimizer = _adamw(parameters, optim)
    generator = torch.Generator().manual_seed(settings.seed)
    ema = EMA(model, recipe.ema.decay, recipe.ema.warmup)
    state = TrainingState(model, ema, optimizer, generator, 0)

    # A prior may fit data statistics (normalisation, PCA, bucket edges) into its buffers before
    # step 0 of a fresh run; a resumed run reads them from the checkpoint and never refits.
    fits_data = recipe.stage == "prior" and resolved.model.weights is None and hasattr(model, "fit_from_embeddings")
    fit_figures: dict[str, Any] = {}
    if resume:
        load_checkpoint(checkpoint_path, state)
        if fits_data and cache is not None and cache.enabled:
            _fit_embeddings(model, dataset, cache, settings.seed)  # only to fill the cache as the first run did
    elif fits_data:
        fit_figures = model.fit_from_embeddings(*_fit_embeddings(model, dataset, cache, settings.seed)) or {}
        ema = state.ema = EMA(model, recipe.ema.decay, recipe.ema.warmup)

    micro = settings.batch_size // dist.world_size // settings.accumulation
    if micro < 1:
        raise UnclipError(
            f"train.batch_size {settings.batch_size} is smaller than world size {dist.world_size} "
            f"x train.accumulation {settings.accumulation}"
        )
    trained = wrap_for_training(recipe.stage, model, dist)

    # Every rank encodes the preview items, as one process does first: the cached embeddings
    # then come from the same encoder batches whatever the world size (a product's last bits
    # depend on its batch). Only rank 0 keeps the batch for its previews.
    preview_batch = stage_batch(
        recipe.stage, model, next(first_items(dataset, PREVIEW_ITEMS, settings.seed)), cache, latents=latents
    )
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _log_header(out, resolved, dist, settings, model)
        if fit_figures:
            _log(out, {"event": "fit", **fit_figures})
    else:
        preview_batch = None
    if resume and ((cache is not None and cache.enabled) or (latents is not None and latents.enabled)):
        _refill_cache(recipe.stage, model, dataset, cache, settings, dist, state.step, latents)
    if streaming:
        batches: Any = StreamBatches(
            dataset, settings.batch_size, settings.accumulation, settings.seed, settings.workers, dist, state.step
        )
    else:
        batches = MapBatches(dataset, settings.batch_size, settings.accumulation, settings.seed, dist)

    total = settings.steps
    stop_at = total if max_steps is None else min(total, state.step + max_steps)
    bar = _progress_bar(progress and dist.is_main, state.step, total)
    last_loss = float("nan")
    started = time.perf_counter()
    samples_done = 0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if settings.precision == "bf16" else _null()

    with StopRequested() as stop:
        stopping = False
        while state.step < stop_at and not stopping:
            step = state.step
            factor = lr_factor(step, total, optim.warmup_steps, optim.decay, optim.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = optim.lr * factor
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            parts = batches.step(step)
            for chunk, (k, raw) in enumerate(parts):
                draws = micro_generator(generator, settings.seed, step, k)
                batch = stage_batch(recipe.stage, model, raw, cache, draws, latents)
                # Gradients are all-reduced once per step, on the last micro-batch's backward.
                with _no_sync(trained, chunk < len(parts) - 1):
                    with autocast:
                        loss = trained(batch, draws) / settings.accumulation
                    loss.backward()
                loss_sum += float(loss.detach())
            if optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(parameters, optim.grad_clip)
            optimizer.step()
            state.step += 1
            ema.update(model, state.step)
            # Every rank logs the same loss and stops at the same step (see agree()).
            last_loss, stopping = agree(dist, loss_sum, stop.requested)
            samples_done += settings.batch_size
            if not math.isfinite(last_loss):
                raise UnclipError(f"loss became {last_loss} at step {state.step}; lower optim.lr or check the data")

            if dist.is_main:
                elapsed = time.perf_counter() - started
                rate = samples_done / max(elapsed, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", samples_s=f"{rate:.1f}")
                if state.step % recipe.output.log_every == 0 or state.step == stop_at:
                    _log(out, {"step": state.step, "loss": last_loss, "lr": optim.lr * factor,
                               "samples_per_s": rate, "elapsed_s": elapsed})
                if state.step % recipe.output.checkpoint_every == 0:
                    _checkpoint(out, state, resolved)
                if recipe.output.sample_every and state.step % recipe.output.sample_every == 0:
                    _preview(recipe.stage, model, ema, preview_batch, out, state.step, preview_sampler, latents)

    if bar is not None:
        bar.close()
    summary: dict[str, Any] = {"step": state.step, "loss": last_loss, "stopped_early": state.step < stop_at,
                               "samples_per_s": samples_done / max(time.perf_counter() - started, 1e-9)}
    if dist.is_main:
        _checkpoint(out, state, resolved)
        summary.update(_preview(recipe.stage, model, ema, preview_batch, out, state.step, preview_sampler, latents))
        _log(out, {"event": "end", **summary})
        summary["run_dir"] = str(out)
    dist.close()
    return summary


def _no_sync(trained: nn.Module, skip: bool) -> Any:
    """DDP's ``no_sync`` for the micro-batches before a step's last (one all-reduce per step)."""
    return trained.no_sync() if skip and hasattr(trained, "no_sync") else _null()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _freeze(model: nn.Module, patterns: list[str]) -> None:
    """Keep parameters matching any pattern out of training (an unknown pattern is an error)."""
    for pattern in patterns:
        matched = [p for name, p in model.named_parameters() if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise UnclipError(f"train.freeze: {pattern!r} matches no parameter of {type(model).__name__}")
        for parameter in matched:
            parameter.requires_grad_(False)


def _adamw(parameters: list[nn.Parameter], optim: Any) -> torch.optim.Optimizer:
    """AdamW, fused where this torch build has it: the per-tensor loop was a tenth of a CPU
    step for small models."""
    kwargs = {"lr": optim.lr, "betas": optim.betas, "weight_decay": optim.weight_decay}
    try:
        return torch.optim.AdamW(parameters, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, foreach=True, **kwargs)


def _fit_embeddings(model: Any, dataset: Any, cache: Any, seed: int) -> tuple[Tensor, Tensor]:
    """Image and text embeddings ``[N, D]`` of the first ``model.fit_items`` items (2048 when
    the model does not say), for ``fit_from_embeddings``: the diffusion prior's mean and std,
    the AR prior's PCA and buckets. Precomputed where the dataset has them."""
    images, texts = [], []
    for raw in first_items(dataset, int(getattr(model, "fit_items", 2048)), seed):
        if "image_embed" in raw:
            images.append(raw["image_embed"].float())
            texts.append(text_encoding(raw).embed.float())
        else:
            text, image_embed = cache(raw["image"], raw["caption"], raw["index"])
            images.append(image_embed)
            texts.append(text.embed)
    return torch.cat(images), torch.cat(texts)


def _refill_cache(
    stage: str, model: Any, dataset: Any, cache: Any, settings: Any, dist: Distributed, done: int, latents: Any = None
) -> None:
    """Encode the items of the steps before ``done`` in the batches they first came in.

    A matrix product's last bits depend on the batch it runs in, so an embedding computed
    in another batch than the uninterrupted run's differs by ~1e-9 — enough to make a resumed
    run drift from it. Replaying the batch composition (frozen-encoder forwards only, and
    only until every item has been seen) keeps resume exact.
    """
    batches = MapBatches(dataset, settings.batch_size, settings.accumulation, settings.seed, dist)
    stores = [c.store for c in (cache, latents) if c is not None and c.enabled]
    for step in range(done):
        if all(len(store) >= len(dataset) for store in stores):
            break
        for _, part in batches.indices(step):
            if any(index not in store for store in stores for index in part):
                stage_batch(stage, model, collate(dataset, part), cache, latents=latents)


def _checkpoint(out: Path, state: TrainingState, resolved: ResolvedTraining) -> None:
    save_checkpoint(out / CHECKPOINT_NAME, state, resolved.digest)
    export = resolved.recipe.output.export
    if export:
        export_weights(state.model, state.ema, (resolved.base_dir / export).resolve(), resolved, state.step)


def _preview(
    stage: str, model: nn.Module, ema: EMA, batch: Any, out: Path, step: int, sampler: Any, latents: Any = None
) -> dict[str, float]:
    if batch is None:
        return {}
    averaged = copy.deepcopy(model)
    ema.copy_to(averaged)
    autoencoder = latents.autoencoder if latents is not None else None
    figures = preview(stage, averaged, batch, out, step, sampler, autoencoder=autoencoder)
    if figures:
        _log(out, {"step": step, **figures})
    return figures


def _log(out: Path, record: dict[str, Any]) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _log_header(out: Path, resolved: ResolvedTraining, dist: Distributed, settings: Any, model: nn.Module) -> None:
    micro = settings.batch_size // dist.world_size // settings.accumulation
    _log(out, {
        "event": "start",
        "recipe": str(resolved.source),
        "recipe_digest": resolved.digest,
        "stage": resolved.recipe.stage,
        "parameters": sum(p.numel() for p in model.parameters()),
        "world_size": dist.world_size,
        "micro_batch_per_rank": micro,
        "accumulation": settings.accumulation,
        "effective_batch": micro * dist.world_size * settings.accumulation,
        "note": f"effective batch = {micro} per rank x {dist.world_size} ranks x {settings.accumulation} accumulation",
    })


def _progress_bar(enabled: bool, start: int, total: int) -> Any:
    if not enabled:
        return None
    return tqdm(total=total, initial=start, desc="train", file=sys.stderr, dynamic_ncols=True)
