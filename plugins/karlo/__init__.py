"""Built-in plugin ``karlo``: what running Karlo's published weights needs beyond the stack's
own components — the ``hf-clip`` encoder (CLIP from transformers, encoding captions as Karlo
does) and the ``unclip-scheduler`` sampler (Karlo's modified DDPM, step for step as diffusers'
``UnCLIPScheduler``) — and the ``karlo`` import format: ``unclip import karlo`` turns a
diffusers Karlo folder into a recipe that uses them (:mod:`.importer`).

transformers is an optional dependency (the ``karlo`` extra): it is imported when an encoder
is built, so discovery and recipe validation work without it.
"""
from __future__ import annotations

from unclip_core import hookimpl

from .hf_clip import HfClipEncoder
from .hf_clip_config import HfClipConfig
from .importer import KarloImporter, import_karlo
from .scheduler import UnclipSchedulerConfig, UnclipSchedulerSampler, unclip_timesteps

__all__ = ["HfClipConfig", "HfClipEncoder", "KarloImporter", "import_karlo", "UnclipSchedulerConfig", "UnclipSchedulerSampler", "unclip_timesteps"]


@hookimpl
def register_encoders(register) -> None:
    register(
        "hf-clip",
        HfClipEncoder,
        HfClipConfig,
        summary="CLIP text (and image) towers from transformers with a local tokenizer folder, "
        "encoding captions as Karlo does.",
    )


@hookimpl
def register_samplers(register) -> None:
    register(
        "unclip-scheduler",
        UnclipSchedulerSampler,
        UnclipSchedulerConfig,
        summary="Karlo's modified DDPM (diffusers' UnCLIPScheduler), step for step in float32.",
    )


@hookimpl
def register_importers(register) -> None:
    register("karlo", KarloImporter(), summary=KarloImporter.help)
