"""The shape of a recipe file, independent of which components it names.

A recipe has one slot per stage. Each slot names a registered component by ``type``, gives
that component's own settings under ``config`` (validated later by the component's own
pydantic model) and, for models, a ``weights`` file relative to the recipe (the names in
capitals stand for registered components; recipes/shapes.yaml is a real recipe)::

    encoder:   {type: ENCODER, config: {...}, weights: clip.safetensors}
    prior:     {type: PRIOR, config: {...}, weights: prior.safetensors,
                guidance_scale: 4.0, candidates: 2, sampler: {type: SAMPLER, config: {steps: 25}}}
    decoder:   {type: DECODER, ..., guidance_scale: 3.0, sampler: {type: SAMPLER, ...},
                autoencoder: {type: AUTOENCODER, config: {...}, weights: movq.safetensors}}
    upsamplers:
      - {type: UPSAMPLER, ..., sampler: {type: SAMPLER, config: {steps: 20}}}
    runtime:   {device: cpu, precision: fp32, memory_format: channels_last}
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base of every recipe section (inference and training): unknown keys are an error, and
    so are NaN and infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SamplerSlot(Strict):
    """A sampler by registry name, with its settings."""

    type: str = Field(description="Registered sampler name (`unclip plugins` lists them).")
    config: dict[str, Any] = Field(default_factory=dict, description="The sampler's own settings.")


class ComponentSlot(Strict):
    """A model component by registry name, with its settings and weights."""

    type: str = Field(description="Registered component name (`unclip plugins` lists them).")
    config: dict[str, Any] = Field(default_factory=dict, description="The component's own settings.")
    weights: str | None = Field(
        default=None,
        description="A .safetensors file, relative to the recipe file; omitted = random initial weights.",
    )


NullCaption = Literal["learned", "empty"]
NULL_CAPTION_HELP = (
    "The caption of classifier-free guidance's unconditional branch: 'learned', the model's own null "
    "caption; 'empty', the encoder's encoding of \"\" computed with the prompts (diffusers' unCLIP "
    "pipeline and Karlo)."
)


class PriorStage(ComponentSlot):
    sampler: SamplerSlot | None = Field(
        default=None, description="Sampler for diffusion priors; autoregressive priors take none."
    )
    guidance_scale: float = Field(default=4.0, ge=0, description="Classifier-free guidance on the caption.")
    candidates: int = Field(
        default=2, ge=1, le=64, description="Best of N: samples per caption, the one most similar to it is kept."
    )
    null_caption: NullCaption = Field(default="learned", description=NULL_CAPTION_HELP)


INVERSION_SAMPLER_HELP = (
    "Deterministic sampler (with an eta setting) for inversion, variations, interpolation and text diffs; "
    "omitted: the sampler registered for the 'inversion' role (`unclip plugins`), with the decoder sampler's "
    "steps and timestep_spacing."
)


class AutoencoderSlot(ComponentSlot):
    """The autoencoder a latent decoder denoises in (VQ like MoVQ, KL like Stable Diffusion's VAE)."""


class DecoderStage(ComponentSlot):
    sampler: SamplerSlot = Field(description="Sampler for the decoder.")
    autoencoder: AutoencoderSlot | None = Field(
        default=None,
        description="Latent decoders only: the autoencoder whose latents the decoder denoises (decodes its output, "
        "encodes images for img2img and variations).",
    )
    inversion_sampler: SamplerSlot | None = Field(default=None, description=INVERSION_SAMPLER_HELP)
    guidance_scale: float = Field(
        default=3.0, ge=0, description="Classifier-free guidance on image embedding and caption together."
    )
    candidates: int = Field(
        default=1, ge=1, le=16,
        description="Best of N decoded images (CLIP reranking, as unCLIP and DALL-E do): each image is drawn N times "
        "at the decoder's size and the one the encoder finds most similar to its caption goes on to the upsamplers. "
        "Costs N decoder runs; 1 draws once.",
    )
    null_caption: NullCaption = Field(default="learned", description=NULL_CAPTION_HELP)


class UpsamplerStage(ComponentSlot):
    sampler: SamplerSlot = Field(description="Sampler for this upsampling stage.")


class Runtime(Strict):
    """Where and how the pipeline runs."""

    device: str = Field(default="cpu", description="torch device, e.g. 'cpu' or 'cuda'.")
    precision: Literal["fp32", "bf16", "bf16-matmul", "auto"] = Field(
        default="fp32",
        description="bf16 runs the models under bfloat16 autocast (fast on AMX CPUs and GPUs); bf16-matmul (CPU) keeps "
        "fp32 tensors while oneDNN's convolutions and matrix products compute in bf16 where the CPU has native bf16 "
        "(closer to fp32 than autocast; exact fp32 on other CPUs); auto measures, once per machine, which mode "
        "really computes in bf16 and is fastest (`unclip doctor`), bf16 on bf16-capable GPUs.",
    )
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; None leaves torch's default.")
    memory_format: Literal["channels_last", "contiguous"] = Field(
        default="channels_last",
        description="Layout of the models' 4-D weights. channels_last runs the convolutions faster on the CPU "
        "(measured in docs/benchmarks.md); contiguous is torch's default layout.",
    )


class Recipe(Strict):
    """An inference recipe: every stage of text → image."""

    name: str | None = Field(default=None, description="Short name shown by `unclip recipe ls`.")
    description: str | None = Field(default=None, description="One line on what this recipe is for.")
    encoder: ComponentSlot
    prior: PriorStage
    decoder: DecoderStage
    upsamplers: list[UpsamplerStage] = Field(default_factory=list, description="Super-resolution stages, in order.")
    runtime: Runtime = Field(default_factory=Runtime)


SLOTS = ("name", "description", "encoder", "prior", "decoder", "upsamplers", "runtime")
