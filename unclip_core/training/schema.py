"""The shape of a training recipe.

One recipe trains one stage. It names the component being trained (``model``), the frozen
CLIP that supplies embeddings for the prior and decoder stages (``encoder``), a registered
``dataset``, and the optimiser, EMA, schedule and output settings (capitals stand for
registered components; recipes/train/ holds real ones)::

    stage: decoder
    model:   {type: DECODER, config: {...}}
    encoder: {type: ENCODER, config: {...}, weights: clip.safetensors}
    dataset: {type: DATASET, config: {size: 32}}
    optim:   {lr: 1.0e-3, warmup_steps: 200}
    train:   {steps: 3000, batch_size: 32}
    output:  {dir: runs/decoder, export: shapes/decoder.safetensors}
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from unclip_core.recipe.schema import ComponentSlot, SamplerSlot, Strict

Stage = Literal["encoder", "prior", "decoder", "upsampler", "autoencoder"]


class DatasetSlot(Strict):
    type: str = Field(description="Registered dataset name (`unclip plugins` lists them).")
    config: dict[str, Any] = Field(default_factory=dict, description="The dataset's own settings.")


class OptimSettings(Strict):
    """AdamW with linear warm-up, then cosine or linear decay."""

    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    warmup_steps: int = Field(100, ge=0, description="Steps of linear warm-up from 0 to lr.")
    decay: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate shape after warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of lr.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this; null = no clipping.")


class EmaSettings(Strict):
    """Exponential moving average of the weights, used for sampling and export."""

    decay: float = Field(0.999, ge=0, lt=1, description="Target EMA decay.")
    warmup: bool = Field(
        True,
        description="Use decay min(decay, (1+step)/(10+step)) so a short run does not average in its untrained start.",
    )


class TrainSettings(Strict):
    steps: int = Field(gt=0, description="Optimiser steps to train for (a resumed run continues to this total).")
    batch_size: int = Field(
        32, ge=1,
        description="Samples per optimiser step, all processes together (each of W ranks trains batch_size/W).",
    )
    accumulation: int = Field(1, ge=1, description="Micro-batches each process accumulates per optimiser step.")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 autocast; measure first: small convnets on CPU ran slower under it."
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds data order, noise, timesteps and dropout (0 … 2**32-1: the data order seeds torch with seed × 1,000,003 + epoch).")
    freeze: list[str] = Field(
        default_factory=list,
        description="Parameter-name patterns (fnmatch) kept frozen, e.g. 'model.token_embedding.*'.",
    )
    workers: int = Field(
        0, ge=0,
        description="DataLoader worker processes reading a streaming dataset (shards); 0 reads in the training process.",
    )
    cache_embeddings: bool = Field(
        True, description="Keep the frozen encoder's outputs per dataset item in memory (finite datasets)."
    )


class OutputSettings(Strict):
    dir: str = Field("runs/{name}", description="Run folder (checkpoints, log.jsonl, samples/); relative to the working directory.")
    checkpoint_every: int = Field(250, ge=1, description="Save a resumable checkpoint every N steps.")
    log_every: int = Field(10, ge=1, description="Append metrics to log.jsonl every N steps.")
    sample_every: int = Field(0, ge=0, description="Write a sample grid every N steps (0: only at the end).")
    export: str | None = Field(
        None, description="Where the EMA weights go (safetensors, relative to the recipe file), at each checkpoint and the end."
    )
    preview_sampler: SamplerSlot | None = Field(
        None,
        description="Sampler for the preview grids of diffusion stages; omitted: the sampler registered for the "
        "'inversion' role (`unclip plugins`), 25 steps.",
    )
    export_dtype: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="Precision of exported floating-point weights (fp16 halves the file; loading casts back)."
    )


class TrainRecipe(Strict):
    name: str = Field(description="Run name; also names the default run folder.")
    description: str | None = None
    stage: Stage = Field(description="Which component kind is trained.")
    model: ComponentSlot = Field(description="The component being trained (weights: optional initial weights).")
    encoder: ComponentSlot | None = Field(
        None, description="Frozen CLIP giving text and image embeddings (prior and decoder stages)."
    )
    autoencoder: ComponentSlot | None = Field(
        None,
        description="Frozen autoencoder whose latents a latent decoder is trained on (the decoder stage of a "
        "decoder that declares latent; its trained weights, e.g. from the autoencoder stage).",
    )
    dataset: DatasetSlot
    optim: OptimSettings = Field(default_factory=OptimSettings)
    ema: EmaSettings = Field(default_factory=EmaSettings)
    train: TrainSettings
    output: OutputSettings = Field(default_factory=OutputSettings)


TRAIN_SLOTS = tuple(TrainRecipe.model_fields)
