"""unclip's imported Kandinsky 2.2 recipe against diffusers' ``KandinskyV22CombinedPipeline``,
on the same weights: time and peak memory, as ratios.

For each size (``small``: diffusers' own Kandinsky 2.2 test components, 64 px images from
32 px latents — tests/kandinsky22_folders.py; ``medium``: wider towers, a 3-level UNet and
MoVQ, 128 px images from 32 px latents) the script builds random folders, saves them,
imports them with ``unclip import kandinsky22``, loads both pipelines from disk in this
process and times text → image alternately (a warm-up each, then ``--repeats`` runs, median
seconds, the three pipelines in turn each round). Ours runs in fp32 twice: as imported (the default channels-last layout) and with
``runtime.memory_format=contiguous`` (diffusers' layout, the one with exact parity). Peak
RSS is measured for each pipeline alone, in a child process (load, one run).

Usage: ``python bench/kandinsky22_vs_diffusers.py [--sizes small,medium] [--steps 25,25]
[--repeats 3] [--threads N] [--no-rss]``. Random weights make the images noise, but the work
is the same.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from process_memory import ChildFailed, peak_rss_in_child, rss_mib  # siblings in bench/
from vs_diffusers_cli import child_options, comparison_parser, parse, steps_of
from timing import timed_alternately

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kandinsky22_folders import load_reference, save_folders  # noqa: E402

PROMPTS = ["a red horse", "blue cat"]
MEDIUM = dict(
    text_encoder=dict(hidden_size=128, projection_dim=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=4),
    image_encoder=dict(hidden_size=128, projection_dim=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=4,
                       image_size=64, patch_size=8),
    prior=dict(num_attention_heads=4, attention_head_dim=32, embedding_dim=128, num_layers=4),
    unet=dict(block_out_channels=(64, 128, 256), layers_per_block=2, encoder_hid_dim=128, cross_attention_dim=256,
              attention_head_dim=32,
              down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"),
              up_block_types=("SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D")),
    movq=dict(block_out_channels=[64, 128, 128], down_block_types=["DownEncoderBlock2D"] * 2 + ["AttnDownEncoderBlock2D"],
              up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 2),
)
SIZES = {"small": ({}, 64), "medium": (MEDIUM, 128)}


def build(size: str, root: Path) -> tuple[Path, Path, Path]:
    """``(prior folder, decoder folder, imported recipe)`` for ``size`` under ``root``."""
    from unclip_plugins.kandinsky22 import import_kandinsky22

    changes, image_size = SIZES[size]
    with torch.random.fork_rng(devices=[]):
        prior, decoder = save_folders(root, **changes)
    return prior, decoder, import_kandinsky22(prior, decoder, root / "imported", image_size=image_size)


def load_ours(recipe: Path, steps: tuple[int, int], memory_format: str = "channels_last"):
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline(recipe, [f"prior.sampler.config.steps={steps[0]}", f"decoder.sampler.config.steps={steps[1]}",
                                  "runtime.precision=fp32", f"runtime.memory_format={memory_format}"])


def run_theirs(combined, steps: tuple[int, int], size: int, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        images = combined(PROMPTS, num_inference_steps=steps[1], prior_num_inference_steps=steps[0], height=size, width=size,
                          generator=torch.Generator().manual_seed(seed), output_type="np").images
    return torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1


def child_rss(args: argparse.Namespace) -> None:
    """Load and run one pipeline once; print its peak RSS (MiB) as JSON."""
    steps = steps_of(args)
    root = Path(args.child_folder)
    _, size = SIZES[args.size]
    if args.child == "ours":
        load_ours(root / "imported" / "kandinsky22.yaml", steps).generate_tensors(PROMPTS)  # type: ignore[arg-type]
    else:
        combined, _, _ = load_reference(root / "kandinsky-2-2-prior", root / "kandinsky-2-2-decoder")
        run_theirs(combined, steps, size)  # type: ignore[arg-type]
    print(json.dumps({"peak_rss_mib": rss_mib()}))


def time_both(args: argparse.Namespace, root: Path, recipe: Path, size: str, pixels: int, steps: tuple[int, int]) -> None:
    """Time diffusers and both of our layouts in turn; print the ratios and the difference."""
    combined, _, _ = load_reference(root / "kandinsky-2-2-prior", root / "kandinsky-2-2-decoder")
    ours_cl, ours_contiguous = load_ours(recipe, steps), load_ours(recipe, steps, "contiguous")
    seconds, images = timed_alternately({
        "diffusers": lambda: run_theirs(combined, steps, pixels),
        "channels-last": lambda: ours_cl.generate_tensors(PROMPTS),
        "contiguous": lambda: ours_contiguous.generate_tensors(PROMPTS),
    }, args.repeats)
    t_theirs, t_cl, t_contiguous = seconds["diffusers"], seconds["channels-last"], seconds["contiguous"]
    theirs, ours = images["diffusers"], images["contiguous"]
    print(f"{size} ({pixels} px, 2 prompts): diffusers {t_theirs:.3f} s; ours channels-last {t_cl:.3f} s "
          f"({t_cl / t_theirs:.2f}x), contiguous {t_contiguous:.3f} s ({t_contiguous / t_theirs:.2f}x); "
          f"max |difference| contiguous vs diffusers {(ours - theirs).abs().max().item():.1e}")


def main() -> None:
    parser = comparison_parser(__doc__.splitlines()[0], sizes="small,medium", sizes_help=None,
                               steps="25,25", steps_help="prior,decoder steps", repeats=3)
    parser.add_argument("--rss-only", action="store_true", help="measure only the peak RSS, no timing")
    parser.add_argument("--size", default="small", help=argparse.SUPPRESS)
    args = parse(parser)
    if args.child:
        child_rss(args)
        return
    steps = steps_of(args)
    print(f"{platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"steps {steps}, {args.repeats} repeats (median)")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            _, _, recipe = build(size, root)
            pixels = SIZES[size][1]
            if args.rss_only:
                print(f"{size} ({pixels} px, 2 prompts):")
            else:
                time_both(args, root, recipe, size, pixels, steps)
            if args.no_rss:
                continue
            rss = {}
            for child in ("ours", "diffusers"):
                try:
                    rss[child] = peak_rss_in_child(__file__, child, folder, "--size", size, *child_options(args))["peak_rss_mib"]
                except ChildFailed:
                    rss[child] = float("nan")
            print(f"  peak RSS: ours {rss['ours']:.0f} MiB, diffusers {rss['diffusers']:.0f} MiB "
                  f"({rss['ours'] / rss['diffusers']:.2f}x)")


if __name__ == "__main__":
    main()
