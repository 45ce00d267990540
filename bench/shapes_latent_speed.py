"""Images per second of latent decoding against the shipped pixel ``shapes`` recipe, side by side
in one process (issue 20's target: at least 2×).

The reference is ``shapes`` as shipped (32 px decoder, 25 DDIM steps, then the 32 → 64
upsampler, 15 steps). The latent stack is ``shapes`` with its decoder replaced by the latent
decoder of ``--train-recipe`` (default ``train/shapes-latent-decoder``: the UNet at 16 × 16 on
the KL autoencoder's latents, same sampler) and no upsampler; same CLIP, prior, prompts, batch
and seed. Without ``--latent-recipe`` its decoder and autoencoder carry random weights (speed
does not depend on them: an estimate before training); with it (e.g. ``shapes-latent`` once
trained) the recipe is timed as it is.

The two run in turn each round (load from other jobs falls on both alike); the figure is the
median over rounds of seconds per batch and their ratio.

Usage: ``python bench/shapes_latent_speed.py [--rounds 3] [--threads 1] [--latent-recipe R] [--set KEY=VALUE ...] [--latent-set KEY=VALUE ...]``.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import yaml

PROMPTS = [
    "a red circle",
    "a blue square above a green triangle",
    "a yellow triangle",
    "an orange circle to the left of a purple square",
]


def latent_overrides(train_recipe: str) -> list[str]:
    """``shapes`` overrides that swap in the latent decoder (random weights) and drop the upsampler."""
    from unclip_core.recipe.files import find_recipe, read_yaml

    data = read_yaml(find_recipe(train_recipe))
    autoencoder = {k: v for k, v in data["autoencoder"].items() if k != "weights"}
    flow = lambda value: yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()  # noqa: E731
    return ["decoder.weights=null", f"decoder.config={flow(data['model']['config'])}",
            f"decoder.autoencoder={flow(autoencoder)}", "upsamplers=[]"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-recipe", default="train/shapes-latent-decoder")
    parser.add_argument("--latent-recipe", default=None, help="a trained latent recipe to time as it is")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for both stacks, e.g. runtime.precision=fp32 (repeatable)")
    parser.add_argument("--latent-set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for the latent stack only, e.g. decoder.config.use_text=false (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from unclip_core.recipe.assemble import load_pipeline

    stacks = {"pixel (shapes)": load_pipeline("shapes", args.set)}
    if args.latent_recipe:
        stacks[f"latent ({args.latent_recipe})"] = load_pipeline(args.latent_recipe, [*args.set, *args.latent_set])
    else:
        stacks[f"latent ({args.train_recipe}, random weights)"] = load_pipeline("shapes", [*latent_overrides(args.train_recipe), *args.set, *args.latent_set])
    times: dict[str, list[float]] = {name: [] for name in stacks}
    for _ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, pipeline in stacks.items():
            start = time.perf_counter()
            images = pipeline.generate_tensors(PROMPTS, seed=0)
            times[name].append(time.perf_counter() - start)
            assert images.shape == (len(PROMPTS), 3, 64, 64), images.shape
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{len(PROMPTS)} images a batch, median of {args.rounds} rounds, overrides {args.set or 'none'}, latent {args.latent_set or 'none'}")
    (pixel, pixel_times), (latent, latent_times) = times.items()
    base = statistics.median(pixel_times[1:])
    for name, values in times.items():
        seconds = statistics.median(values[1:])
        precision = stacks[name].settings.precision
        print(f"{name:48s} {precision:11s} {seconds:6.2f} s/batch  {len(PROMPTS) / seconds:5.2f} images/s  speed-up {base / seconds:4.2f}x")


if __name__ == "__main__":
    main()
