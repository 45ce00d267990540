"""``unclip embed SHARDS (--recipe RECIPE) --out DIR [--size N] [--batch-size B] [--dtype D]``.

Precomputes the CLIP embeddings of tar shards with the encoder a recipe names (a training
recipe's ``encoder`` slot, or an inference recipe's), beside the shards in ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="precompute CLIP embeddings of tar shards (the prior then trains without CLIP)")
    p.add_argument("shards", help="tar shards: brace pattern or glob, e.g. 'data/{00000..00009}.tar'")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. encoder.weights=clip.safetensors")
    p.add_argument("-r", "--recipe", required=True, help="recipe whose encoder computes the embeddings (training or inference)")
    p.add_argument("--out", required=True, help="folder for the .npy files and embeddings.json")
    p.add_argument("--size", type=int, default=None, help="image side the encoder is given (default: its input size)")
    p.add_argument("--batch-size", type=int, default=64, help="samples encoded at once")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="precision of the stored embeddings")
    p.add_argument("--image-key", default="jpg;jpeg;png;webp", help="extensions tried for a sample's image")
    p.add_argument("--caption-key", default="txt", help="extension of a sample's caption")
    p.add_argument("--overwrite", action="store_true", help="recompute shards already done (and replace another encoder's)")
    p.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from unclip_core.errors import InputError
    from unclip_core.registry import default_registry
    from unclip_core.training.precompute import check_out, check_size, precompute_embeddings

    # The options first: a bad one is named before the recipe is loaded or --out is looked at.
    check_size(args.size)
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    check_out(args.out)
    if not any(key.strip() for key in args.image_key.split(";")):
        raise InputError("--image-key is empty; give the image extensions, e.g. jpg;png")
    if not args.caption_key.strip():
        raise InputError("--caption-key is empty; give the caption extension, e.g. txt")
    registry = default_registry()
    encoder = encoder_slot(args.recipe, args.overrides, registry)
    summary = precompute_embeddings(
        args.shards, encoder, Path(args.out), registry, size=args.size, batch_size=args.batch_size, dtype=args.dtype,
        image_key=args.image_key, caption_key=args.caption_key, overwrite=args.overwrite,
    )
    print(json.dumps(summary))
    return 0


def encoder_slot(recipe: str, overrides: list[str], registry):  # noqa: ANN001, ANN201 - a Registry → a ResolvedComponent
    """The resolved ``encoder`` slot of a training or an inference recipe (with overrides):
    what ``unclip embed`` encodes shards with and ``unclip eval folder`` scores images with."""
    from unclip_core.errors import InputError
    from unclip_core.recipe.files import find_recipe, read_yaml

    data = read_yaml(find_recipe(recipe))
    if isinstance(data, dict) and "stage" in data:
        from unclip_core.training.validate import load_training

        encoder = load_training(recipe, overrides, registry).encoder
        if encoder is None:
            raise InputError(f"{recipe} has no encoder slot")
        return encoder
    from unclip_core.recipe.files import load_recipe

    return load_recipe(recipe, overrides, registry).encoder
