"""The five kinds of component, and the contracts between them.

Every stage of unCLIP is one of these. A plugin subclasses the matching base class and
registers a factory for it (see :mod:`unclip_core.hookspecs`). The conventions are fixed
here so that any encoder, prior, decoder, upsampler and sampler can be chained:

* images inside the stack are float tensors ``[B, 3, H, W]`` in ``[-1, 1]``;
* embeddings are ``[B, D]``, unit-normalised where CLIP normalises them;
* a diffusion model is called as ``model(x_t, t, cond)`` with integer training timesteps
  ``t`` of shape ``[B]`` and declares its parameterisation and variance;
* the **sampler owns the loop**: it drives a :class:`Denoiser` (the model with its
  conditioning and classifier-free guidance bound) and never sees the model itself;
* every random draw takes an explicit :class:`torch.Generator`.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from unclip_core.conditions import CondT, concat_conditions, map_tensors  # noqa: F401 - plugins import the two from here
from unclip_core.diffusion.guidance import bind_denoiser
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.errors import UnclipError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

Kind = Literal["encoder", "prior", "decoder", "upsampler", "sampler", "autoencoder"]
KINDS: tuple[Kind, ...] = ("encoder", "prior", "decoder", "upsampler", "sampler")
"""The five kinds a recipe's stages are made of; an ``autoencoder`` is a slot of a latent
decoder (``decoder.autoencoder``), not a stage of its own."""

PredictionType = Literal["eps", "x0", "v"]
VarianceType = Literal["fixed_small", "fixed_large", "learned_range"]


# --------------------------------------------------------------------------------------
# What a component declares before any weights load
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declared:
    """Sizes a component promises, read from its *config* so a recipe's chain can be checked
    before anything is built. ``None`` means "not applicable / accepts anything"."""

    embed_dim: int | None = None
    """CLIP embedding size D produced (encoder) or consumed (prior, decoder)."""
    text_width: int | None = None
    """Width W of per-token caption features produced (encoder) or consumed (prior, decoder)."""
    context_length: int | None = None
    """Number of caption tokens L produced (encoder) or consumed."""
    image_size: int | None = None
    """Side of the image produced (decoder, upsampler) or read (encoder's image tower)."""
    input_size: int | None = None
    """Side of the low-resolution image an upsampler conditions on."""
    needs_sampler: bool | None = None
    """Priors: whether the stage must name a sampler (diffusion) or must not (autoregressive)."""
    latent: bool | None = None
    """Decoders: True for a latent decoder (:class:`LatentDecoder`), which denoises in an
    autoencoder's latent space and needs the recipe slot ``decoder.autoencoder``."""
    latent_channels: int | None = None
    """Latent decoders: channels of the latents they denoise; autoencoders: channels of the
    latents they make. The two must agree."""
    downscale: int | None = None
    """Autoencoders: pixels per latent cell along each side (the latent is ``s / downscale``)."""
    negative_image: bool | None = None
    """Decoders: the unconditional branch of guidance reads an image embedding — the prior's
    sample for the negative prompt where there is one (Kandinsky 2.2), the model's null one
    otherwise — so the prior samples negative prompts beside the prompts."""
    inpainting: bool | None = None
    """Decoders: whether the model reads a known image and a repaint mask as extra input
    channels (a trained inpainting decoder; :class:`DecoderCondition`'s ``inpaint_*``), so
    inpainting conditions on them instead of falling back to training-free RePaint."""
    embedding_space: str | None = None
    """Name of the CLIP embedding space produced (encoder, prior) or read (decoder), e.g.
    ``openai/clip-vit-large-patch14``: two components of one size may still mean different
    things by an embedding (Karlo's prior and a Stable unCLIP-H decoder both say 1024 only by
    accident of sizes), so a recipe whose prior and decoder name different spaces is refused.
    None: not stated (only the sizes are checked)."""


class ComponentConfig(BaseModel):
    """Base for every component's settings: unknown keys are an error, never a warning."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)

    def declares(self) -> Declared:
        """What this configuration promises to the rest of the chain (override in plugins)."""
        return Declared()


ConfigT = TypeVar("ConfigT", bound=ComponentConfig)


class Component(nn.Module, Generic[ConfigT]):
    """A model component: an ``nn.Module`` built from a validated config."""

    kind: ClassVar[Kind]

    def __init__(self, config: ConfigT):
        super().__init__()
        self.config = config

    @property
    def declared(self) -> Declared:
        return self.config.declares()

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.float32

    def adapt_initial_weights(self, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
        """The weights a *training run starts from* (a training recipe's ``model.weights``),
        made to fit this component before they are checked and loaded; ``source`` names the
        file for errors. The default changes nothing.

        Why a hook: fine-tuning may start from a related architecture's weights — a trained
        inpainting decoder starts from an ordinary decoder, whose input convolution it widens
        with zeros. Only training calls it; an inference recipe loads exactly what it names,
        so a file made for another architecture is refused there rather than adapted."""
        return state


# --------------------------------------------------------------------------------------
# Conditioning carried between stages
# --------------------------------------------------------------------------------------
@dataclass
class TextEncoding:
    """A batch of captions as the encoder sees them."""

    embed: Tensor
    """``[B, D]`` pooled, unit-norm CLIP text embedding z_t."""
    tokens: Tensor
    """``[B, L, W]`` per-token features (GLIDE-style decoders attend to them)."""
    mask: Tensor
    """``[B, L]`` bool, True where a token is real (not padding)."""
    null: "TextEncoding | None" = None
    """The encoder's encoding of the empty caption ``""``, one row per caption, when the
    pipeline computed it for a stage whose ``null_caption`` is ``empty``; None otherwise.
    Classifier-free guidance then reads it as the unconditional caption (diffusers' unCLIP
    pipeline and GLIDE do) instead of the model's learned null caption."""
    negative: bool = False
    """``null`` is the encoding of negative prompts: every stage's unconditional branch reads
    it, whatever the stage's ``null_caption``."""
    decoder: "TextEncoding | None" = None
    """The same captions as a decoder with a caption encoder of its own reads them
    (:meth:`Decoder.encode_captions`; Stable unCLIP reads SD's CLIP text tower), with their
    own ``null``; the pipeline hands the decoder this in place of the encoder's encoding.
    None: the decoder reads this encoding."""

    def __len__(self) -> int:
        return int(self.embed.shape[0])

    def repeat_interleave(self, n: int) -> "TextEncoding":
        return map_tensors(self, lambda t: t.repeat_interleave(n, dim=0))

    def with_null(self, null: "TextEncoding | None", *, negative: bool = False) -> "TextEncoding":
        """This encoding carrying ``null`` (the empty caption's encoding, or with ``negative``
        the negative prompts', same batch) as the unconditional caption of classifier-free
        guidance; ``None`` removes it."""
        if null is not None and len(null) != len(self):
            raise ValueError(f"{len(self)} captions but {len(null)} null captions")
        return dataclasses.replace(self, null=null, negative=negative and null is not None)


@dataclass
class PriorCondition:
    """What a prior's denoiser is conditioned on. ``drop_text[b]`` asks the model to use its
    unconditional (classifier-free) input for sample ``b`` instead of the caption.

    When the text carried the empty caption's encoding (``null_text``), the unconditional
    condition is that caption itself, read like any other (as diffusers' unCLIP pipeline and
    GLIDE do) rather than the model's learned null caption."""

    text_embed: Tensor
    text_tokens: Tensor
    text_mask: Tensor
    drop_text: Tensor
    null_text: TextEncoding | None = None

    @classmethod
    def from_text(cls, text: TextEncoding) -> "PriorCondition":
        drop = torch.zeros(len(text), dtype=torch.bool, device=text.embed.device)
        return cls(text.embed, text.tokens, text.mask, drop, text.null)

    def unconditional(self) -> "PriorCondition":
        if self.null_text is not None:
            return dataclasses.replace(self, **_as_caption(self.null_text))
        return dataclasses.replace(self, drop_text=torch.ones_like(self.drop_text))


@dataclass
class DecoderCondition:
    """What a decoder's denoiser is conditioned on: the CLIP image embedding and (optionally)
    the caption. The ``drop_*`` flags select the model's own null inputs, which is how both
    training-time dropout and classifier-free guidance are expressed."""

    image_embed: Tensor
    drop_image: Tensor
    drop_text: Tensor
    text_embed: Tensor | None = None
    text_tokens: Tensor | None = None
    text_mask: Tensor | None = None
    null_text: TextEncoding | None = None
    """The empty caption's encoding, when the text carried it: the unconditional condition
    then reads it as its caption (see :class:`PriorCondition`); the image embedding is still
    dropped for the model's learned null one."""
    inpaint_image: Tensor | None = None
    """For decoders that declare ``inpainting``: ``[B, 3, H, W]`` in [-1, 1], the image whose
    known part is kept. The decoder itself zeroes the part ``inpaint_mask`` repaints, so
    whatever lies there never reaches the model. Kept by :meth:`unconditional` (GLIDE:
    guidance is on the caption and embedding, the known pixels are a fact)."""
    inpaint_mask: Tensor | None = None
    """``[B, 1, H, W]``, 1 (or True) where the decoder repaints, 0 where the image is known.
    Both ``inpaint_*`` None: nothing is known, i.e. ordinary generation."""
    negative_image_embed: Tensor | None = None
    """``[B, D]``: the image embedding classifier-free guidance's unconditional branch reads
    in place of the model's null one (Kandinsky 2.2: the prior's sample for the negative
    prompt). None: the unconditional branch drops the image embedding (``drop_image``)."""
    noise_level: Tensor | None = None
    """``[B]`` integer noise level the image embedding was noised to, for decoders trained on
    noised embeddings (Stable unCLIP); None for the others. Kept by :meth:`unconditional`."""
    noised_image_embed: Tensor | None = None
    """For decoders that read a noise-augmented embedding (Stable unCLIP): ``[B, 2D]``, the
    image embedding noised to the decoder's noise level followed by that level's embedding,
    drawn by :meth:`Decoder.prepare_condition` at the start of the decoder stage. Kept by
    :meth:`unconditional`; ``drop_image`` tells the decoder to read its null input instead."""

    @classmethod
    def build(cls, image_embed: Tensor, text: TextEncoding | None = None) -> "DecoderCondition":
        batch = image_embed.shape[0]
        zeros = torch.zeros(batch, dtype=torch.bool, device=image_embed.device)
        if text is None:
            return cls(image_embed, zeros, torch.ones_like(zeros))
        if len(text) != batch:
            raise ValueError(f"{batch} image embeddings but {len(text)} captions")
        return cls(image_embed, zeros, zeros.clone(), text.embed, text.tokens, text.mask, text.null)

    def unconditional(self) -> "DecoderCondition":
        if self.negative_image_embed is not None:
            negative = dataclasses.replace(self, image_embed=self.negative_image_embed.to(self.image_embed))
            if self.null_text is not None:
                return dataclasses.replace(negative, **_as_caption(self.null_text))
            return dataclasses.replace(negative, drop_text=torch.ones_like(self.drop_text))
        drop_image = torch.ones_like(self.drop_image)
        if self.null_text is not None:
            return dataclasses.replace(self, drop_image=drop_image, **_as_caption(self.null_text))
        return dataclasses.replace(self, drop_image=drop_image, drop_text=torch.ones_like(self.drop_text))


def _as_caption(text: TextEncoding) -> dict[str, Tensor]:
    """``text`` as a condition's caption fields (the empty caption read like any other)."""
    return {"text_embed": text.embed, "text_tokens": text.tokens, "text_mask": text.mask}


@dataclass
class UpsamplerCondition:
    """An upsampler is conditioned on the low-resolution image only (no text)."""

    low_res: Tensor

    def unconditional(self) -> "UpsamplerCondition":
        raise NotImplementedError("upsamplers are not trained for classifier-free guidance")


# --------------------------------------------------------------------------------------
# Diffusion models and the denoiser a sampler drives
# --------------------------------------------------------------------------------------
@runtime_checkable
class Denoiser(Protocol):
    """A diffusion model with its conditioning (and guidance) bound in.

    ``denoiser(x_t, t)`` takes integer training timesteps ``t`` of shape ``[B]`` and returns
    the model's prediction of type ``prediction_type``; with ``variance_type ==
    "learned_range"`` the channels are doubled: prediction first, then the interpolation
    values in ``[-1, 1]`` between the fixed-small and fixed-large log variances (iDDPM).
    Predicted x0 is clamped to ``[-clip_range, clip_range]`` by samplers unless it is None.
    """

    prediction_type: PredictionType
    variance_type: VarianceType
    schedule: NoiseSchedule
    clip_range: float | None
    device: torch.device
    dtype: torch.dtype

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor: ...


class DiffusionModel(Component[ConfigT], Generic[ConfigT, CondT]):
    """Base of priors, decoders and upsamplers that are trained as diffusion models."""

    prediction_type: PredictionType = "eps"
    variance_type: VarianceType = "fixed_small"
    clip_range: float | None = 1.0

    @property
    @abstractmethod
    def schedule(self) -> NoiseSchedule:
        """The noise schedule this model was trained with."""

    @abstractmethod
    def forward(self, x_t: Tensor, t: Tensor, cond: CondT) -> Tensor:  # type: ignore[override]
        """One prediction. Honour ``drop_*`` flags in ``cond`` by using the null inputs."""

    def denoiser(self, cond: CondT, guidance_scale: float = 1.0) -> Denoiser:
        """Bind ``cond`` (and classifier-free guidance when ``guidance_scale != 1``)."""
        return bind_denoiser(self, cond, guidance_scale)


# --------------------------------------------------------------------------------------
# The five kinds
# --------------------------------------------------------------------------------------
class Encoder(Component[ConfigT]):
    """CLIP: text and images into one embedding space."""

    kind = "encoder"

    @abstractmethod
    def encode_text(self, prompts: Sequence[str]) -> TextEncoding:
        """Tokenise and encode captions. An empty string is the unconditional caption."""

    @abstractmethod
    def encode_image(self, images: Tensor | Sequence["Image.Image"]) -> Tensor:
        """``[B, D]`` unit-norm image embeddings from PIL images or ``[B,3,H,W]`` in [-1, 1]."""

    @property
    def logit_scale(self) -> Tensor:
        """Temperature for zero-shot classification (CLIP's learned scale); 100 by default."""
        return torch.tensor(100.0)


class Prior(Component[ConfigT]):
    """Maps a caption to a CLIP *image* embedding."""

    kind = "prior"

    @abstractmethod
    def sample(
        self,
        text: TextEncoding,
        *,
        sampler: "Sampler | None",
        generator: torch.Generator,
        guidance_scale: float = 1.0,
        candidates: int = 1,
        callback: "StepCallback | None" = None,
    ) -> Tensor:
        """``[B, D]`` unit-norm image embeddings, best of ``candidates`` by z_i·z_t."""


class Decoder(DiffusionModel[ConfigT, DecoderCondition]):
    """Draws a base-resolution image from a CLIP image embedding (and caption)."""

    kind = "decoder"
    in_channels: int = 3

    def encode_captions(self, prompts: Sequence[str]) -> TextEncoding | None:
        """Captions as this decoder reads them, for a decoder with a caption encoder of its own
        (Stable unCLIP reads SD's CLIP text tower, not the one the prior's space comes from).
        None (the default): it reads the recipe encoder's encoding of the prompts."""
        return None

    def prepare_condition(self, cond: DecoderCondition, generator: torch.Generator) -> DecoderCondition:
        """The condition completed with what the decoder draws at random before its x_T (Stable
        unCLIP noises the image embedding here, from the call's generator, where diffusers
        draws it). The default changes nothing and draws nothing."""
        return cond


class LatentDecoder(Decoder[ConfigT]):
    """A decoder that denoises in an autoencoder's latent space (Kandinsky 2.2, Stable
    unCLIP). The pipeline samples ``[B, latent_channels, s / downscale, s / downscale]``
    through the same :class:`~unclip_core.stage.Stage` as a pixel decoder, then decodes with
    the recipe's ``decoder.autoencoder``; ``in_channels`` is the latent's channel count and
    ``clip_range`` is None (latents are not bounded like pixels). A subclass's config must
    declare ``latent=True`` and ``latent_channels``."""

    clip_range: float | None = None

    @property
    def in_channels(self) -> int:  # type: ignore[override]
        return int(self.declared.latent_channels or 4)


class Autoencoder(Component[ConfigT]):
    """Maps images to a latent space and back, for a latent decoder (VQ like MoVQ, KL like
    Stable Diffusion's VAE). A recipe names it in the decoder's slot ``decoder.autoencoder``."""

    kind = "autoencoder"

    @property
    def latent_channels(self) -> int:
        return int(self.declared.latent_channels)  # type: ignore[arg-type]

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along each side."""
        return int(self.declared.downscale)  # type: ignore[arg-type]

    @abstractmethod
    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[B, latent_channels, H / downscale, W / downscale]`` latents of ``images``
        ``[B, 3, H, W]`` in [-1, 1], already multiplied by the model's scaling factor. A
        model whose encoding is a distribution samples it with ``generator`` (its mean
        without one)."""

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """``[B, 3, H, W]`` images in about [-1, 1] from latents as :meth:`encode` makes them."""


class Upsampler(DiffusionModel[ConfigT, UpsamplerCondition]):
    """Raises resolution, conditioned on the lower-resolution image."""

    kind = "upsampler"
    in_channels: int = 3


@dataclass
class StepInfo:
    """What a sampler reports after each step (for progress bars, previews, trajectories)."""

    index: int
    total: int
    t: int
    x: Tensor
    x0: Tensor | None = None


StepCallback = Callable[[StepInfo], None]


class Sampler(ABC, Generic[ConfigT]):
    """Owns the reverse-diffusion loop. Stateless apart from its config, so one instance can
    serve several stages and threads."""

    kind: ClassVar[Kind] = "sampler"

    def __init__(self, config: ConfigT):
        self.config = config

    @property
    def declared(self) -> Declared:
        return self.config.declares()

    @abstractmethod
    def sample(
        self,
        denoiser: Denoiser,
        shape: Sequence[int],
        *,
        generator: torch.Generator,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Run the reverse process from ``x_T`` (drawn from ``generator`` when None) to x_0."""

    def sample_from(
        self, denoiser: Denoiser, x0: Tensor, strength: float, *, generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """img2img (SDEdit): of the ``steps`` the sampler takes, the last ``int(steps ·
        strength)`` — ``x0`` noised to the first of them with one draw from ``generator``,
        then denoised as :meth:`sample` would (diffusers' img2img pipelines). Strength 0
        returns ``x0`` unchanged, 1 runs the whole chain from noised ``x0``."""
        raise UnclipError(f"sampler {type(self).__name__} cannot start from an image (img2img); use ddim, ddpm, "
                          "diffusers-scheduler or unclip-scheduler")

    def invert(self, denoiser: Denoiser, x0: Tensor, *, callback: StepCallback | None = None) -> Tensor:
        """Map a clean sample to the noise that samples back to it (deterministic samplers)."""
        raise UnclipError(f"sampler {type(self).__name__} cannot invert; use a deterministic one (`unclip plugins` lists the samplers)")
