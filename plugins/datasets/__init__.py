"""Built-in training datasets: the shapes world, a folder of image + caption pairs, and
WebDataset tar shards streamed across ranks (with optional precomputed CLIP embeddings)."""
from __future__ import annotations

from unclip_core import hookimpl

from .image_folder import ImageFolderConfig, ImageFolderDataset
from .shapes import ShapesConfig, build_shapes
from .shards import ShardsConfig, ShardsDataset


@hookimpl
def register_datasets(register):
    register("shapes", build_shapes, ShapesConfig,
             summary="The shapes world (docs/shapes.md): rendered scenes with checkable captions, held-out pairs excluded.")
    register("image-folder", ImageFolderDataset, ImageFolderConfig,
             summary="A folder of images, each with a same-named .txt caption file.")
    register("shards", ShardsDataset, ShardsConfig,
             summary="WebDataset tar shards (img2dataset's output), streamed and split by rank and worker; "
             "optional precomputed CLIP embeddings (unclip embed).")


__all__ = ["ImageFolderConfig", "ImageFolderDataset", "ShapesConfig", "ShardsConfig", "ShardsDataset", "build_shapes"]
