"""The hooks a plugin implements: one per kind of component.

Each hook receives a ``register`` callback (the pattern of simonw/llm)::

    from unclip_core import hookimpl

    @hookimpl
    def register_samplers(register):
        register("my-sampler", MySampler, MySamplerConfig, summary="One line for `unclip plugins`.")

``register(name, factory, config_model, *, summary=None)``: ``factory(config)`` builds the
component from a validated instance of ``config_model`` (a :class:`ComponentConfig`, so
unknown settings are rejected). Weights, when a recipe gives them, are loaded by the core
afterwards with ``load_state_dict``.
"""
from __future__ import annotations

import pluggy

PROJECT = "unclip"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_encoders(register):
    """Register CLIP-style text/image encoders (:class:`unclip_core.interfaces.Encoder`)."""


@hookspec
def register_priors(register):
    """Register priors mapping captions to image embeddings (:class:`~unclip_core.interfaces.Prior`)."""


@hookspec
def register_decoders(register):
    """Register decoders drawing base images from embeddings (:class:`~unclip_core.interfaces.Decoder`)."""


@hookspec
def register_upsamplers(register):
    """Register super-resolution stages (:class:`~unclip_core.interfaces.Upsampler`)."""


@hookspec
def register_autoencoders(register):
    """Register autoencoders a latent decoder denoises in (:class:`~unclip_core.interfaces.Autoencoder`),
    named by a recipe's ``decoder.autoencoder`` slot."""


@hookspec
def register_samplers(register):
    """Register reverse-diffusion samplers (:class:`~unclip_core.interfaces.Sampler`)."""


@hookspec
def register_datasets(register):
    """Register training datasets: ``factory(config)`` returns a ``torch.utils.data.Dataset``
    whose items are ``{"image": [3,H,W] in [-1,1], "caption": str}``, or a streaming dataset
    (:class:`unclip_core.training.data.StreamingDataset`: ``batches(...)`` split by rank and
    worker, and ``embedding_source()``) for data too large to index."""


@hookspec
def register_evaluations(register):
    """Register evaluations run by ``unclip eval NAME``: ``factory(config)`` returns an
    :class:`unclip_core.evaluation.Evaluation` (a prompt set and a judge of the images)."""


@hookspec
def register_importers(register):
    """Register ``unclip import NAME`` formats: ``register(name, importer, *, summary=None)``
    where ``importer`` is an :class:`unclip_core.importing.Importer` (it adds its own
    command-line arguments and writes a recipe with its weights). The core knows no format
    by name; a format's layout and mapping live in the plugin that registers it."""


HOOK_FOR_KIND = {
    "encoder": "register_encoders",
    "prior": "register_priors",
    "decoder": "register_decoders",
    "upsampler": "register_upsamplers",
    "sampler": "register_samplers",
    "autoencoder": "register_autoencoders",
    "dataset": "register_datasets",
    "evaluation": "register_evaluations",
}
