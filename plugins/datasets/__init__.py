"""Built-in training datasets: the shapes world and a folder of image + caption pairs."""
from __future__ import annotations

from unclip_core import hookimpl

from .image_folder import ImageFolderConfig, ImageFolderDataset
from .shapes import ShapesConfig, build_shapes


@hookimpl
def register_datasets(register):
    register("shapes", build_shapes, ShapesConfig,
             summary="The shapes world (SHAPES.md): rendered scenes with checkable captions, held-out pairs excluded.")
    register("image-folder", ImageFolderDataset, ImageFolderConfig,
             summary="A folder of images, each with a same-named .txt caption file.")


__all__ = ["ImageFolderConfig", "ImageFolderDataset", "ShapesConfig", "build_shapes"]
