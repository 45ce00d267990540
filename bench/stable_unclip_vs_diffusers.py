"""unclip's imported Stable unCLIP recipe against diffusers' ``StableUnCLIPPipeline``, on the same weights.

For each size (``small``: diffusers' own Stable unCLIP test components, 32 px latents and
images; ``medium``: a three-level UNet on 32 px latents under a VAE that downscales by 4, 128 px
images, 128-wide CLIP towers and a four-layer prior) the script builds random components as
``tests/stable_unclip_folders.py`` does, saves them, imports them with ``unclip import
stable-unclip``, loads both pipelines from disk in this process and times them alternately (a
warm-up each, then ``--repeats`` runs, median seconds), in fp32: ours as imported (the default
channels-last layout) and with ``runtime.memory_format=contiguous`` (diffusers' layout, the one
the parity tests check). It reports ours/diffusers, the largest difference of the images, and
the peak RSS of each pipeline measured alone in a child process after the imports both share
(ours/diffusers).

Usage: ``python bench/stable_unclip_vs_diffusers.py [--sizes small,medium] [--steps 25,20]
[--repeats 3] [--threads N] [--no-rss]``. Random weights make the images noise, but the work is the same.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from process_memory import ChildFailed, peak_rss_in_child, rss_mib  # siblings in bench/
from vs_diffusers_cli import child_options, comparison_parser, parse, report_heading, steps_of
from timing import timed_alternately

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stable_unclip_folders import UNET, save_text_to_image  # noqa: E402

PROMPTS = ["a red horse", "blue cat"]
MEDIUM_EMBED = 128
SIZES: dict[str, dict] = {
    "small": {},
    "medium": {
        "unet": {
            **UNET,
            "block_out_channels": (64, 128, 256),
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": (4, 8, 8),
            "layers_per_block": 2,
            "cross_attention_dim": MEDIUM_EMBED,
            "projection_class_embeddings_input_dim": 2 * MEDIUM_EMBED,
        },
        "text_encoder": {"intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4},
        "prior_text_encoder": {"hidden_size": MEDIUM_EMBED, "projection_dim": MEDIUM_EMBED, "intermediate_size": 512,
                               "num_hidden_layers": 4, "num_attention_heads": 4},
        "prior": {"num_attention_heads": 4, "attention_head_dim": 32, "embedding_dim": MEDIUM_EMBED, "num_layers": 4},
        "vae": {"block_out_channels": (32, 64, 128), "down_block_types": ("DownEncoderBlock2D",) * 3,
                "up_block_types": ("UpDecoderBlock2D",) * 3, "sample_size": 128},
    },
}


def load_ours(recipe: Path, steps: tuple[int, int], memory_format: str = "channels_last"):
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline(recipe, [f"prior.sampler.config.steps={steps[0]}", f"decoder.sampler.config.steps={steps[1]}",
                                  "runtime.precision=fp32", f"runtime.memory_format={memory_format}"])


def load_diffusers(folder: Path):
    from diffusers import StableUnCLIPPipeline

    pipe = StableUnCLIPPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_ours(pipeline, seed: int = 0) -> torch.Tensor:
    return (pipeline.generate_tensors(PROMPTS, seed=seed) * 0.5 + 0.5).clamp(0, 1)


def run_diffusers(pipe, steps: tuple[int, int], seed: int = 0) -> torch.Tensor:
    images = pipe(PROMPTS, generator=torch.Generator().manual_seed(seed), prior_num_inference_steps=steps[0],
                  num_inference_steps=steps[1], output_type="np").images
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)


def child_rss(args: argparse.Namespace) -> None:
    """Load and run one pipeline once; print its peak RSS (MiB) as JSON. Both sides import
    everything first and the peak is then reset (Linux: /proc/self/clear_refs), so the figure
    is the pipeline's weights and working memory, not the import of torch and diffusers (which
    otherwise dominates at these sizes and is the same for both)."""
    from diffusers import StableUnCLIPPipeline  # noqa: F401 - imported before the peak is reset
    from unclip_core.recipe.assemble import load_pipeline  # noqa: F401
    from unclip_core.registry import discover

    discover()
    steps = steps_of(args)
    root = Path(args.child_folder)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    baseline = rss_mib("VmRSS")
    with torch.no_grad():
        if args.child == "ours":
            run_ours(load_ours(root / "imported" / "stable-unclip.yaml", steps))  # type: ignore[arg-type]
        else:
            run_diffusers(load_diffusers(root / "folder"), steps)  # type: ignore[arg-type]
    print(json.dumps({"peak_rss_mib": rss_mib(), "after_imports_mib": baseline}))


def main() -> None:
    parser = comparison_parser(__doc__.splitlines()[0], sizes="small,medium", sizes_help="any of small, medium",
                               steps="25,20", steps_help="prior,decoder steps (diffusers' defaults)", repeats=3)
    args = parse(parser)
    if args.child:
        child_rss(args)
        return

    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    steps = steps_of(args)
    print(report_heading(args, len(PROMPTS)) + ", fp32")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            save_text_to_image(root / "folder", **SIZES[size])
            recipe = import_stable_unclip(root / "folder", root / "imported")
            theirs = load_diffusers(root / "folder")
            ours = load_ours(recipe, steps)  # type: ignore[arg-type]
            exact = load_ours(recipe, steps, "contiguous")  # type: ignore[arg-type]
            runs = {"diffusers": lambda: run_diffusers(theirs, steps), "ours": lambda: run_ours(ours),  # type: ignore[arg-type]
                    "exact": lambda: run_ours(exact)}
            with torch.no_grad():
                median, images = timed_alternately(runs, args.repeats)
            side = images["diffusers"].shape[-1]
            print(f"\n[{size}] {side} px images", flush=True)
            print(f"  diffusers fp32                      {median['diffusers']:8.3f} s")
            for name, label in (("ours", "ours fp32 (default, channels-last)"), ("exact", "ours fp32 (contiguous)")):
                error = float((images[name] - images["diffusers"]).abs().max())
                print(f"  {label:<35} {median[name]:8.3f} s   ours/diffusers {median[name] / median['diffusers']:.3f}   "
                      f"max |ours - diffusers| {error:.2e}", flush=True)
            if not args.no_rss:
                rss = {}
                for child in ("ours", "diffusers"):
                    try:
                        figures = peak_rss_in_child(__file__, child, root, *child_options(args))
                    except ChildFailed as exc:
                        print(f"  peak RSS {child:<10} failed: {exc}")
                        continue
                    rss[child] = figures["peak_rss_mib"] - figures["after_imports_mib"]
                    print(f"  peak RSS {child:<10} {figures['peak_rss_mib']:8.1f} MiB, "
                          f"{rss[child]:7.1f} MiB above the imports")
                if len(rss) == 2:
                    print(f"  peak RSS above the imports, ours/diffusers {rss['ours'] / rss['diffusers']:.3f}")


if __name__ == "__main__":
    main()
