"""Does a CLIP bind colours to shapes and read word order? A diagnostic for the shapes world.

For rendered two-object scenes, the image's embedding is compared with its caption's and with
the caption's *bag-of-words twins* — the same words in another meaning: colours swapped,
shapes swapped, objects' order swapped (each false for the scene; twins naming a held-out
pair are skipped for seen scenes, kept for held-out ones, whose captions already name one).
A CLIP that reads captions as bags of words scores each twin as high as the truth. Printed
per group (seen / held-out pairs) and per kind of swap: the share of scenes whose caption
beats the twin, and the share beating every twin at once. Scenes are rendered at the
encoder's own image size, 400 per group (``--scenes``), drawn with a fixed seed.

Usage: ``python bench/clip_binding.py [--weights FILE ...] [--scenes 400]`` — each FILE is an
``open-clip`` weights file for the shipped ``shapes`` recipe's encoder configuration (e.g.
one exported by ``unclip train train/shapes-clip-negatives``); the shipped CLIP is always
the first row.
"""
from __future__ import annotations

import argparse
import platform
from datetime import date

import numpy as np
import torch

from unclip_core.recipe.assemble import build_component
from unclip_core.recipe.files import load_recipe
from unclip_plugins.shapes.captions import caption, describe_object
from unclip_plugins.shapes.renderer import render_array
from unclip_plugins.shapes.world import HELD_OUT_PAIRS, sample_scene

SWAPS = ("colours", "shapes", "order")


def twins(scene) -> dict[str, str]:
    """The caption's bag-of-words twins by kind (a kind is missing where the swap changes nothing)."""
    (c1, s1), (c2, s2) = scene.pairs
    relation = scene.relation
    edits = {"colours": ((c2, s1), (c1, s2)), "shapes": ((c1, s2), (c2, s1)), "order": ((c2, s2), (c1, s1))}
    found = {}
    for kind, (first, second) in edits.items():
        if first == second or (first, second) == ((c1, s1), (c2, s2)):
            continue
        found[kind] = f"{describe_object(*first)} {relation} {describe_object(*second)}"
    return found


def scenes(group: str, count: int, seed: int) -> list:
    rng = np.random.default_rng((seed, 0 if group == "seen" else 1))
    found = []
    while len(found) < count:
        scene = sample_scene(rng, "train" if group == "seen" else "all")
        if scene.relation is None or (group == "held-out") != scene.has_held_out_pair():
            continue
        found.append(scene)
    return found


@torch.no_grad()
def binding(encoder, group_scenes: list, size: int) -> dict[str, float]:
    images = torch.stack([torch.from_numpy(render_array(s, size)).permute(2, 0, 1).float() / 127.5 - 1
                          for s in group_scenes])
    image = encoder.encode_image(images)
    wins = {kind: [] for kind in SWAPS}
    every = []
    for index, scene in enumerate(group_scenes):
        options = twins(scene)
        if not scene.has_held_out_pair():  # seen scenes: twins naming a held-out pair are left out
            options = {k: t for k, t in options.items() if not any(
                pair in HELD_OUT_PAIRS for pair in _pairs(t))}
        texts = [caption(scene), *options.values()]
        scores = image[index] @ encoder.encode_text(texts).embed.T
        beats = {kind: bool(scores[0] > scores[1 + i]) for i, kind in enumerate(options)}
        for kind, won in beats.items():
            wins[kind].append(won)
        if beats:
            every.append(all(beats.values()))
    result = {kind: 100 * float(np.mean(v)) for kind, v in wins.items() if v}
    result["all twins"] = 100 * float(np.mean(every))
    return result


def _pairs(text: str):
    from unclip_plugins.shapes.captions import parse_caption

    return parse_caption(text).objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[], help="other open-clip weights files for the shapes encoder")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    torch.manual_seed(0)
    recipe = load_recipe("shapes")
    size = int(recipe.encoder.declared.image_size) if getattr(recipe.encoder.declared, "image_size", None) else 32
    candidates = [("shipped shapes CLIP", None)] + [(path, path) for path in args.weights]
    groups = {group: scenes(group, args.scenes, args.seed) for group in ("seen", "held-out")}
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {date.today()}")
    print(f"{args.scenes} two-object scenes per group at {size} px, seed {args.seed}; % of scenes whose caption beats its twin")
    header = "| CLIP | group | " + " | ".join(f"{k} swapped" for k in SWAPS) + " | every twin |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, weights in candidates:
        slot = recipe.encoder if weights is None else _with_weights(recipe.encoder, weights)
        encoder = build_component(slot)
        for group, group_scenes in groups.items():
            figures = binding(encoder, group_scenes, size)
            cells = " | ".join(f"{figures[k]:.1f}" if k in figures else "—" for k in SWAPS)
            print(f"| {label} | {group} | {cells} | {figures['all twins']:.1f} |")


def _with_weights(slot, weights: str):
    import dataclasses
    from pathlib import Path

    return dataclasses.replace(slot, weights=Path(weights))


if __name__ == "__main__":
    main()
