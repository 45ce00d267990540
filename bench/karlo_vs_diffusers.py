"""unclip's imported Karlo recipe against diffusers' ``UnCLIPPipeline``, on the same weights.

For each size (``small``: diffusers' own unCLIP test components, decoder 32 px, super-resolution
to 64 px; ``medium``: decoder 64 px, super-resolution to 256 px) the script builds random
components in Karlo's diffusers layout, saves them, imports them with ``unclip import karlo``,
loads both pipelines from disk in this process and times them alternately (a warm-up each,
then ``--repeats`` runs, median seconds). Ours runs twice: as imported (the default
channels-last layout) and with ``runtime.memory_format=contiguous`` (diffusers' layout, the one
with bit-for-bit parity). ``real`` times one step of the prior, decoder and super-resolution
UNet at Karlo's real sizes instead, one model in memory at a time.

It reports ours/diffusers in fp32, our bf16 autocast against diffusers in fp32 and in bf16
(weights cast; its one antialiased resize, which has no bf16 CPU kernel, runs in fp32; timed
once, without a warm-up), our ``bf16-matmul`` (oneDNN's bf16 arithmetic inside fp32 operations;
timed only on a CPU with bf16 units, where it differs from fp32; elsewhere its PSNR comes from
an emulation), the PSNR of our bf16 images against our fp32 ones (and diffusers' likewise),
whether the fp32 images agree, and the peak RSS of each pipeline measured alone in a child
process. It also says which precision the imported recipe's
``runtime.precision: auto`` picks on this CPU.

Usage: ``python bench/karlo_vs_diffusers.py [--sizes small,medium,real] [--steps 25,25,7]
[--repeats 5] [--threads N] [--no-rss] [--no-bf16] [--skip-diffusers-bf16] [--bf16-breakdown]``.
Random weights make the images noise, but the work is the same.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from process_memory import ChildFailed, peak_rss_in_child, rss_mib  # siblings in bench/
from vs_diffusers_cli import child_options, comparison_parser, parse, report_heading, steps_of
from timing import timed, timed_alternately

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "tests" / "data" / "tiny-clip-tokenizer"
PROMPTS = ["a red horse", "blue cat"]

SIZES = {
    "small": dict(  # diffusers' tests/pipelines/unclip/test_unclip.py
        text=dict(hidden_size=32, projection_dim=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5),
        prior=dict(num_attention_heads=2, attention_head_dim=12, num_layers=1),
        cross=100,
        decoder=dict(sample_size=32, block_out_channels=(32, 64), attention=(False, True), layers_per_block=1, attention_head_dim=4),
        super_res=dict(sample_size=64, block_out_channels=(32, 64), layers_per_block=1, add_attention=True),
    ),
    "medium": dict(
        text=dict(hidden_size=128, projection_dim=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=4),
        prior=dict(num_attention_heads=4, attention_head_dim=32, num_layers=4),
        cross=256,
        decoder=dict(sample_size=64, block_out_channels=(64, 128, 256), attention=(False, True, True), layers_per_block=2, attention_head_dim=32),
        super_res=dict(sample_size=256, block_out_channels=(32, 64, 128, 128), layers_per_block=1, add_attention=False),
    ),
}


REAL = dict(  # diffusers' scripts/convert_kakao_brain_unclip_to_diffusers.py
    prior=dict(),  # PriorTransformer's defaults: 20 layers, 32 heads of 64, embedding 768
    decoder=dict(
        sample_size=64, layers_per_block=3, block_out_channels=(320, 640, 960, 1280), in_channels=3, out_channels=6,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=1536, class_embed_type="identity",
        attention_head_dim=64, resnet_time_scale_shift="scale_shift",
    ),
    super_res=dict(
        sample_size=256, layers_per_block=3, block_out_channels=(320, 640, 960, 1280), in_channels=6, out_channels=3,
        down_block_types=("ResnetDownsampleBlock2D",) * 4, up_block_types=("ResnetUpsampleBlock2D",) * 4,
        add_attention=False,
    ),
)
"""Karlo's real model sizes, for one step of each model with random weights (``--sizes real``)."""


# --------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------
def build_folder(size: str, folder: Path) -> None:
    """Random components of one size, saved in diffusers' Karlo layout."""
    import transformers
    from diffusers import PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip import UnCLIPPipeline
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

    spec = SIZES[size]
    torch.manual_seed(0)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(TOKENIZER), local_files_only=True)
    vocab = tokenizer.get_vocab()
    text = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(
            vocab_size=1000, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"], **spec["text"],
        )
    )
    dim = spec["text"]["projection_dim"]
    prior = PriorTransformer(embedding_dim=dim, **spec["prior"])
    dec = spec["decoder"]
    channels = dec["block_out_channels"]
    text_proj = UnCLIPTextProjModel(clip_embeddings_dim=dim, time_embed_dim=channels[0] * 4, cross_attention_dim=spec["cross"])
    decoder = UNet2DConditionModel(
        sample_size=dec["sample_size"], in_channels=3, out_channels=6,
        down_block_types=tuple("SimpleCrossAttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in dec["attention"]),
        up_block_types=tuple("SimpleCrossAttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(dec["attention"])),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=channels,
        layers_per_block=dec["layers_per_block"], cross_attention_dim=spec["cross"],
        attention_head_dim=dec["attention_head_dim"], resnet_time_scale_shift="scale_shift", class_embed_type="identity",
    )
    sr = spec["super_res"]
    levels = len(sr["block_out_channels"])
    super_res = dict(
        sample_size=sr["sample_size"], layers_per_block=sr["layers_per_block"], in_channels=6, out_channels=3,
        down_block_types=("ResnetDownsampleBlock2D",) * levels, up_block_types=("ResnetUpsampleBlock2D",) * levels,
        block_out_channels=sr["block_out_channels"], add_attention=sr["add_attention"],
    )
    first, last = UNet2DModel(**super_res), UNet2DModel(**super_res)
    with torch.no_grad():  # what diffusers leaves at zero, made to matter
        prior.positional_embedding.normal_(0, 0.5)
        prior.prd_embedding.normal_(0, 0.5)
        prior.clip_mean.normal_(0, 0.5)
        prior.clip_std.uniform_(0.5, 1.5)
        text_proj.learned_classifier_free_guidance_embeddings.normal_()
    UnCLIPPipeline(
        prior=prior, decoder=decoder, text_encoder=text, tokenizer=tokenizer, text_proj=text_proj,
        super_res_first=first, super_res_last=last,
        prior_scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", clip_sample_range=5.0),
        decoder_scheduler=UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon"),
        super_res_scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon"),
    ).save_pretrained(folder, safe_serialization=True)


def load_diffusers(folder: Path, dtype: torch.dtype = torch.float32):
    """diffusers' pipeline from the folder, part by part (``UnCLIPPipeline.from_pretrained``
    cannot find the deprecated ``UnCLIPTextProjModel`` class in recent diffusers)."""
    import transformers
    from diffusers import PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip import UnCLIPPipeline
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

    pipe = UnCLIPPipeline(
        prior=PriorTransformer.from_pretrained(folder / "prior"),
        decoder=UNet2DConditionModel.from_pretrained(folder / "decoder"),
        text_encoder=transformers.CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder"),
        tokenizer=transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        text_proj=UnCLIPTextProjModel.from_pretrained(folder / "text_proj"),
        super_res_first=UNet2DModel.from_pretrained(folder / "super_res_first"),
        super_res_last=UNet2DModel.from_pretrained(folder / "super_res_last"),
        prior_scheduler=UnCLIPScheduler.from_pretrained(folder / "prior_scheduler"),
        decoder_scheduler=UnCLIPScheduler.from_pretrained(folder / "decoder_scheduler"),
        super_res_scheduler=UnCLIPScheduler.from_pretrained(folder / "super_res_scheduler"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dtype=dtype) if dtype != torch.float32 else pipe


def load_ours(recipe: Path, steps: tuple[int, int, int], precision: str = "fp32", memory_format: str = "channels_last"):
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline(recipe, [
        f"prior.sampler.config.steps={steps[0]}", f"decoder.sampler.config.steps={steps[1]}",
        f"upsamplers.0.sampler.config.steps={steps[2]}", f"runtime.precision={precision}",
        f"runtime.memory_format={memory_format}",
    ])


class _Fp32Resize:
    """Stands in for ``torch.nn.functional`` inside diffusers' unCLIP pipeline module while a
    bf16 copy runs: torch's CPU antialiased bicubic resize has no bf16 kernel
    (``NotImplementedError: "compute_index_ranges_weights" not implemented for 'BFloat16'``), so
    this one resize runs in fp32 and casts back; everything else is torch's own."""

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def interpolate(image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if image.dtype == torch.bfloat16 and kwargs.get("antialias"):
            return torch.nn.functional.interpolate(image.float(), *args, **kwargs).to(image.dtype)
        return torch.nn.functional.interpolate(image, *args, **kwargs)


def run_diffusers(pipe, steps: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    if pipe.decoder.dtype == torch.bfloat16:
        from diffusers.pipelines.deprecated.unclip import pipeline_unclip

        original, pipeline_unclip.F = pipeline_unclip.F, _Fp32Resize()
        try:
            return _run_diffusers(pipe, steps, seed)
        finally:
            pipeline_unclip.F = original
    return _run_diffusers(pipe, steps, seed)


def _run_diffusers(pipe, steps: tuple[int, int, int], seed: int) -> torch.Tensor:
    images = pipe(
        PROMPTS, generator=torch.Generator().manual_seed(seed), prior_num_inference_steps=steps[0],
        decoder_num_inference_steps=steps[1], super_res_num_inference_steps=steps[2], output_type="np",
    ).images
    return torch.from_numpy(images).permute(0, 3, 1, 2).float()


def run_ours(pipeline, seed: int = 0) -> torch.Tensor:
    return (pipeline.generate_tensors(PROMPTS, seed=seed).float() * 0.5 + 0.5).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def one_step_at_real_sizes(repeats: int, bf16: bool) -> None:
    """One denoising step of Karlo's prior, decoder and super-resolution UNet at their real sizes
    (random weights, one prompt: guidance doubles the prior and decoder batch), run as diffusers
    runs them (contiguous weights) and as unclip's components run the same modules by default
    (channels-last weights), alternately, each model built and freed in turn."""
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel

    from unclip_core.auto_precision import onednn_bf16_rounds
    from unclip_core.precision import onednn_bf16_math

    t = torch.tensor(500)
    torch.manual_seed(0)
    cases = {
        "prior": (lambda: PriorTransformer(**REAL["prior"]), lambda: dict(
            hidden_states=torch.randn(2, 768), timestep=t, proj_embedding=torch.randn(2, 768),
            encoder_hidden_states=torch.randn(2, 77, 768), attention_mask=torch.ones(2, 77, dtype=torch.bool))),
        "decoder": (lambda: UNet2DConditionModel(**REAL["decoder"]), lambda: dict(
            sample=torch.randn(2, 3, 64, 64), timestep=t, encoder_hidden_states=torch.randn(2, 81, 1536),
            class_labels=torch.randn(2, 1280))),
        "super-res": (lambda: UNet2DModel(**REAL["super_res"]), lambda: dict(sample=torch.randn(1, 6, 256, 256), timestep=t)),
    }
    print("\n[real] one step of each model at Karlo's sizes (random weights), median of", repeats)
    for name, (build, inputs) in cases.items():
        model, kwargs = build().eval(), inputs()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        times: dict[str, list[float]] = {"diffusers": [], "ours": []}
        outputs: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for i in range(repeats + 1):  # the first round is a warm-up
                for which, layout in (("diffusers", torch.contiguous_format), ("ours", torch.channels_last)):
                    model.to(memory_format=layout)
                    t0 = time.perf_counter()
                    outputs[which] = model(**kwargs)[0]
                    if i:
                        times[which].append(time.perf_counter() - t0)
            theirs, ours = (statistics.median(times[w]) for w in ("diffusers", "ours"))
            line = (f"  {name:<9} {params:7.0f} M params   diffusers {theirs:8.3f} s   ours {ours:8.3f} s   "
                    f"ours/diffusers {ours / theirs:.3f}   max diff {float((outputs['ours'] - outputs['diffusers']).abs().max()):.1e}")
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    t0 = time.perf_counter()
                    model(**kwargs)
                    line += f"   ours bf16 autocast {time.perf_counter() - t0:8.3f} s (one run)"
                if onednn_bf16_rounds():  # elsewhere oneDNN computes bf16-matmul in exact fp32
                    with onednn_bf16_math():
                        t0 = time.perf_counter()
                        model(**kwargs)
                        line += f"   ours bf16-matmul {time.perf_counter() - t0:8.3f} s (one run)"
        print(line, flush=True)
        del model, outputs


def bf16_matmul_row(recipe: Path, steps: tuple[int, int, int], repeats: int, t_theirs: float, our_fp32: torch.Tensor) -> None:
    """Ours in ``runtime.precision=bf16-matmul``: timed and compared where oneDNN really computes
    in bf16 (a probe says: the CPU flags do not); elsewhere oneDNN computes exact fp32 (checked
    in one run), and the PSNR is that of the emulation (``bench/bf16_emulation.py``)."""
    from bf16_emulation import emulated_onednn_bf16

    from unclip_core.auto_precision import onednn_bf16_rounds

    pipeline = load_ours(recipe, steps, "bf16-matmul")
    with torch.no_grad():
        if onednn_bf16_rounds():
            seconds, image = timed(lambda: run_ours(pipeline), repeats)
            print(f"  ours bf16-matmul (oneDNN)      {seconds:8.3f} s   vs diffusers fp32 {seconds / t_theirs:.3f}   "
                  f"PSNR vs ours fp32 {psnr(image, our_fp32):.1f} dB", flush=True)
            return
        same = torch.equal(run_ours(pipeline), our_fp32)
        with emulated_onednn_bf16():
            emulated = run_ours(pipeline)
    print(f"  ours bf16-matmul (oneDNN)      not timed: oneDNN has no bf16 kernel for this CPU and computed "
          f"{'exact fp32' if same else 'something other than fp32 (unexpected)'}; "
          f"PSNR vs ours fp32 emulated (operands rounded to bf16): {psnr(emulated, our_fp32):.1f} dB", flush=True)


def _in_fp32(module: torch.nn.Module) -> None:
    """Run this module outside bf16 autocast, its floating inputs cast to fp32."""
    forward = module.forward

    def fp32_forward(*args, **kwargs):
        def up(value):
            return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

        with torch.autocast("cpu", enabled=False):
            return forward(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})

    module.forward = fp32_forward


def _image_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two image batches in [-1, 1], read as [0, 1] images."""
    return psnr((a.float() * 0.5 + 0.5).clamp(0, 1), (b.float() * 0.5 + 0.5).clamp(0, 1))


def bf16_by_stage(recipe: Path, steps: tuple[int, int, int]) -> None:
    """Each stage run in bf16 on the inputs fp32 gave it, against the same stage in fp32 (same
    noise): which stage loses the PSNR. Then the decoder in fp32 arithmetic with only its weights
    rounded to bf16: a floor for any bf16 scheme, which must at least round the weights."""
    fp32, bf16 = load_ours(recipe, steps), load_ours(recipe, steps, "bf16")
    rounded = load_ours(recipe, steps)
    with torch.no_grad():
        for parameter in rounded.decoder.parameters():
            parameter.copy_(parameter.bfloat16().float())
        text = fp32.encode_text(PROMPTS)
        embed = fp32.sample_prior(text, fp32.generator(0))
        embed_bf16 = bf16.sample_prior(text, bf16.generator(0))
        cosine = float(torch.nn.functional.cosine_similarity(embed_bf16, embed).min())
        error = float((embed_bf16 - embed).norm() / embed.norm())
        print(f"  by stage, prior in bf16: image embeddings' relative error {error:.1e}, cosine {cosine:.5f} (worst)")
        base = fp32.decode(embed, text, fp32.generator(1))
        base_bf16 = bf16.decode(embed, text, bf16.generator(1))
        base_rounded = rounded.decode(embed, text, rounded.generator(1))
        print(f"  by stage, decoder in bf16: PSNR {_image_psnr(base_bf16, base):.1f} dB on its images "
              f"(fp32 arithmetic with the decoder's weights rounded to bf16: {_image_psnr(base_rounded, base):.1f} dB)")
        final = fp32.upsample(base, fp32.generator(2))
        final_bf16 = bf16.upsample(base, bf16.generator(2))
        print(f"  by stage, super-resolution in bf16: PSNR {_image_psnr(final_bf16, final):.1f} dB", flush=True)


def bf16_breakdown(recipe: Path, steps: tuple[int, int, int], our_fp32: torch.Tensor) -> None:
    """Where bf16's rounding enters (``--bf16-breakdown``): by stage (:func:`bf16_by_stage`), then
    the PSNR of our bf16 images against our fp32 ones with one kind of layer kept in fp32."""
    from diffusers.models.attention_processor import Attention

    bf16_by_stage(recipe, steps)

    kinds = {"convolutions": (torch.nn.Conv2d,), "linear layers": (torch.nn.Linear,),
             "attention": (Attention,), "norms": (torch.nn.GroupNorm, torch.nn.LayerNorm)}
    for name, types in kinds.items():
        pipeline = load_ours(recipe, steps, "bf16")
        models = [pipeline.prior, pipeline.decoder, *(model for model, _ in pipeline.upsamplers)]
        for module in (m for model in models for m in model.modules() if isinstance(m, types)):
            _in_fp32(module)
        with torch.no_grad():
            image = run_ours(pipeline)
        print(f"  PSNR bf16 vs fp32 with the {name} in fp32: {psnr(image, our_fp32):.1f} dB", flush=True)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------
def child_rss(args: argparse.Namespace) -> None:
    """Load and run one pipeline once; print its peak RSS (MiB) as JSON."""
    steps = steps_of(args)
    folder = Path(args.child_folder)
    which, precision = args.child.split(":")
    if which == "ours":
        pipeline = load_ours(folder / "imported" / "karlo.yaml", steps, precision)  # type: ignore[arg-type]
        run_ours(pipeline)
    else:
        pipe = load_diffusers(folder / "karlo", torch.bfloat16 if precision == "bf16" else torch.float32)
        with torch.no_grad():
            run_diffusers(pipe, steps)  # type: ignore[arg-type]
    print(json.dumps({"peak_rss_mib": rss_mib()}))


def main() -> None:
    parser = comparison_parser(__doc__.splitlines()[0], sizes="small,medium,real", sizes_help="any of small, medium, real",
                               steps="25,25,7", steps_help="prior,decoder,super-res steps", repeats=5)
    parser.add_argument("--no-bf16", action="store_true", help="fp32 only (bf16 autocast is slow on CPUs without AMX)")
    parser.add_argument("--skip-diffusers-bf16", action="store_true",
                        help="skip diffusers cast to bf16 (on CPUs without native bf16 a medium run takes over an hour)")
    parser.add_argument("--bf16-breakdown", action="store_true",
                        help="also the bf16 PSNR of each stage alone, of the decoder with only its weights rounded, "
                             "and with each kind of layer kept in fp32 (one bf16 run per kind)")
    args = parse(parser)
    if args.child:
        child_rss(args)
        return

    from unclip_plugins.karlo.importer import import_karlo
    from unclip_core.auto_precision import resolve_precision

    steps = steps_of(args)
    print(report_heading(args, len(PROMPTS)))
    print(f"the imported recipe's runtime.precision auto picks {resolve_precision('auto', 'cpu')} on this CPU "
          "(fp32 and bf16 are both timed below)")
    for size in args.sizes.split(","):
        if size == "real":
            one_step_at_real_sizes(max(1, min(args.repeats, 3)), bf16=not args.no_bf16)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            build_folder(size, root / "karlo")
            recipe = import_karlo(root / "karlo", root / "imported")
            theirs = load_diffusers(root / "karlo")
            ours = load_ours(recipe, steps)  # type: ignore[arg-type]  # the default: channels-last
            exact = load_ours(recipe, steps, memory_format="contiguous")  # type: ignore[arg-type]
            runs = {"diffusers": lambda: run_diffusers(theirs, steps), "ours": lambda: run_ours(ours),  # type: ignore[arg-type]
                    "exact": lambda: run_ours(exact)}
            with torch.no_grad():
                median, images = timed_alternately(runs, args.repeats)
            t_theirs, their_fp32, our_fp32 = median["diffusers"], images["diffusers"], images["ours"]
            print(f"\n[{size}] decoder {SIZES[size]['decoder']['sample_size']} px -> "
                  f"{SIZES[size]['super_res']['sample_size']} px", flush=True)
            print(f"  diffusers fp32                 {t_theirs:8.3f} s")
            print(f"  ours fp32 (default, channels-last) {median['ours']:8.3f} s   ours/diffusers {median['ours'] / t_theirs:.3f}   "
                  f"max |ours - diffusers| {float((our_fp32 - their_fp32).abs().max()):.2e}, PSNR {psnr(our_fp32, their_fp32):.1f} dB")
            print(f"  ours fp32 (contiguous, exact)  {median['exact']:8.3f} s   ours/diffusers {median['exact'] / t_theirs:.3f}   "
                  f"max |ours - diffusers| {float((images['exact'] - their_fp32).abs().max()):.2e}", flush=True)
            if not args.no_bf16:
                with torch.no_grad():
                    ours_bf16 = load_ours(recipe, steps, "bf16")  # type: ignore[arg-type]
                    t_ours_bf16, our_bf16 = timed(lambda: run_ours(ours_bf16), args.repeats)
                print(f"  ours bf16 (autocast)           {t_ours_bf16:8.3f} s   vs diffusers fp32 {t_ours_bf16 / t_theirs:.3f}   "
                      f"PSNR vs ours fp32 {psnr(our_bf16, our_fp32):.1f} dB", flush=True)
                bf16_matmul_row(recipe, steps, args.repeats, t_theirs, our_fp32)  # type: ignore[arg-type]
                if args.skip_diffusers_bf16:
                    print("  diffusers bf16 (weights)       skipped (--skip-diffusers-bf16)")
                else:
                    # no warm-up: the process is warm, and this run can take very long where bf16 is emulated
                    theirs_bf16 = load_diffusers(root / "karlo", torch.bfloat16)
                    try:
                        with torch.no_grad():
                            t_theirs_bf16, their_bf16 = timed(lambda: run_diffusers(theirs_bf16, steps), 1, warm_up=False)  # type: ignore[arg-type]
                    except (RuntimeError, NotImplementedError) as exc:
                        print(f"  diffusers bf16 (weights) failed: {type(exc).__name__}: {exc}")
                    else:
                        print(f"  diffusers bf16 (weights)       {t_theirs_bf16:8.3f} s   ours bf16/diffusers bf16 "
                              f"{t_ours_bf16 / t_theirs_bf16:.3f}   PSNR vs diffusers fp32 {psnr(their_bf16, their_fp32):.1f} dB",
                              flush=True)
                if args.bf16_breakdown:
                    bf16_breakdown(recipe, steps, our_fp32)  # type: ignore[arg-type]
            if not args.no_rss:
                children = ("ours:fp32", "diffusers:fp32") + (() if args.no_bf16 else ("ours:bf16",))
                children += ("ours:bf16-matmul",) if not args.no_bf16 and resolve_precision("auto", "cpu") == "bf16-matmul" else ()
                children += () if args.no_bf16 or args.skip_diffusers_bf16 else ("diffusers:bf16",)
                for child in children:
                    try:
                        figures = peak_rss_in_child(__file__, child, root, *child_options(args))
                    except ChildFailed as exc:
                        print(f"  peak RSS {child:<15} failed: {exc}")
                        continue
                    print(f"  peak RSS {child:<15} {figures['peak_rss_mib']:8.0f} MiB")


if __name__ == "__main__":
    main()
