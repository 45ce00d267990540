"""How faithfully an autoencoder keeps shapes scenes: render scenes, encode, decode, and let the
shapes checker read each reconstruction against the scene's caption.

A latent decoder can draw no better than its autoencoder decodes, so this is the autoencoder's
gate before a latent decoder is trained on it (issue 20's target: ≥ 99% of reconstructions
read back exactly). The scenes are drawn with a seed the training recipes do not use, from the
``all`` split (held-out colour–shape pairs included: the autoencoder must not care what the
caption grammar holds out). The rendered scenes themselves are judged too: that is the ceiling
(the identity autoencoder's score), reported beside the reconstruction's.

Run it as a command on a training recipe of the ``autoencoder`` stage (its ``model`` slot) or
an inference recipe with a ``decoder.autoencoder`` slot::

    python -m unclip_plugins.shapes.reconstruction train/shapes-autoencoder [--weights W.safetensors]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unclip_core.errors import InputError, UnclipError

from .checker import check
from .dataset import ShapesDataset

EVAL_SEED = 20_2020
"""Scene seed of the evaluation: no shipped training recipe draws its scenes with it."""


@torch.no_grad()
def reconstruction_report(
    autoencoder: Any, *, count: int = 500, size: int = 64, seed: int = EVAL_SEED, split: str = "all",
    batch_size: int = 50,
) -> dict[str, Any]:
    """Figures for ``count`` rendered scenes: ``exact`` (fraction of reconstructions the checker
    reads back exactly), ``rendered_exact`` (the same for the renders: the ceiling),
    ``mean_abs_error`` (per value, images in [-1, 1]), ``latent_std`` (spread of the encoded
    latents, for choosing ``scaling_factor``) and the first failures (caption, what was read)."""
    if count < 1 or batch_size < 1:
        raise InputError(f"count and batch_size must be at least 1, got {count} and {batch_size}")
    dataset = ShapesDataset(split=split, size=size, length=count, seed=seed)  # type: ignore[arg-type]
    exact = rendered_exact = 0
    abs_error = 0.0
    latent_sum = latent_square = 0.0
    latent_count = 0
    failures: list[dict[str, Any]] = []
    for start in range(0, count, batch_size):
        items = [dataset[i] for i in range(start, min(count, start + batch_size))]
        images = torch.stack([item["image"] for item in items])
        latents = autoencoder.encode(images).float()
        rebuilt = autoencoder.decode(latents).float().clamp(-1, 1)
        if tuple(rebuilt.shape) != tuple(images.shape):
            raise InputError(f"the autoencoder decoded {list(images.shape)} images to {list(rebuilt.shape)}")
        abs_error += float((rebuilt - images).abs().sum())
        latent_sum += float(latents.sum())
        latent_square += float((latents.double() ** 2).sum())
        latent_count += latents.numel()
        for item, image, out in zip(items, images, rebuilt):
            rendered_exact += check(_to_uint8(image), item["caption"]).exact
            verdict = check(_to_uint8(out), item["caption"])
            exact += verdict.exact
            if not verdict.exact and len(failures) < 10:
                failures.append({"caption": item["caption"], "read": [f"{o.color} {o.shape}" for o in verdict.objects]})
    mean = latent_sum / latent_count
    return {
        "scenes": count,
        "exact": exact / count,
        "rendered_exact": rendered_exact / count,
        "mean_abs_error": abs_error / (count * 3 * size * size),
        "latent_std": (max(latent_square / latent_count - mean**2, 0.0)) ** 0.5,
        "failures": failures,
    }


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] as the ``[H, W, 3]`` uint8 picture a PNG would hold."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def load_autoencoder(recipe: str, weights: str | None = None) -> Any:
    """The autoencoder a training recipe trains (``model``; weights by default those it
    exports) or an inference recipe decodes with (``decoder.autoencoder``), with ``weights``
    in place of the recipe's."""
    from unclip_core.recipe.assemble import build_component
    from unclip_core.recipe.files import find_recipe, is_training_recipe, load_recipe, read_yaml

    path = find_recipe(recipe)
    data = read_yaml(path)
    if isinstance(data, dict) and is_training_recipe(data):
        from unclip_core.training.validate import load_training

        export = (data.get("output") or {}).get("export")
        if weights is None and export:  # what the recipe's training run exported
            weights = str((path.parent / export).resolve())
        if weights is None:
            raise InputError(f"{path} exports no weights (output.export); pass --weights")
        resolved = load_training(path, [f"model.weights={weights}"])
        if resolved.recipe.stage != "autoencoder":
            raise InputError(f"{path} trains the {resolved.recipe.stage} stage, not an autoencoder")
        return build_component(resolved.model)
    overrides = [f"decoder.autoencoder.weights={weights}"] if weights else []
    resolved = load_recipe(path, overrides)
    slot = getattr(resolved, "autoencoder", None)
    if slot is None:
        raise InputError(f"{path} has no decoder.autoencoder slot (a pixel decoder needs no autoencoder)")
    return build_component(slot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unclip_plugins.shapes.reconstruction", description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="training recipe of the autoencoder stage, or an inference recipe with decoder.autoencoder")
    parser.add_argument("--weights", default=None,
                        help="autoencoder weights (.safetensors) in place of the recipe's (a training recipe's: its output.export)")
    parser.add_argument("--count", type=int, default=500, help="scenes rendered and reconstructed")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="scene seed")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        autoencoder = load_autoencoder(args.recipe, args.weights)
        report = reconstruction_report(autoencoder, count=args.count, size=args.size, seed=args.seed)
        scale = getattr(autoencoder.config, "scaling_factor", None)
        if scale is not None and report["latent_std"] > 0:  # what makes the latents' spread 1 (SD's rule)
            report["unit_std_scaling_factor"] = scale / report["latent_std"]
    except UnclipError as exc:
        print(f"unclip: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
