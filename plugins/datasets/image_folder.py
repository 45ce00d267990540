"""A folder of images with captions: ``cat.png`` + ``cat.txt`` (the img2dataset layout)."""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch.utils.data import Dataset

from unclip_core import ComponentConfig
from unclip_core.errors import InputError
from unclip_core.images import load_image, pil_to_tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ImageFolderConfig(ComponentConfig):
    """Settings of the ``image-folder`` dataset."""

    root: str = Field(description="Folder searched recursively for images with a caption file beside them.")
    size: int = Field(64, ge=8, le=4096, description="Images are centre-cropped to a square and resized to this side.")


class ImageFolderDataset(Dataset):
    """Image + caption pairs from a folder. Images without a ``.txt`` beside them are skipped;
    an empty folder is an error, so a typo in ``root`` is not a silent zero-length epoch."""

    def __init__(self, config: ImageFolderConfig):
        self.config = config
        root = Path(config.root).expanduser()
        if not root.is_dir():
            raise InputError(f"image-folder root is not a folder: {root}")
        self.items = [
            (path, path.with_suffix(".txt"))
            for path in sorted(root.rglob("*"))
            if path.suffix.lower() in IMAGE_SUFFIXES and path.with_suffix(".txt").is_file()
        ]
        if not self.items:
            raise InputError(f"no image with a .txt caption beside it under {root}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        image_path, caption_path = self.items[index]
        caption = caption_path.read_text(encoding="utf-8").strip()
        image = pil_to_tensor([load_image(image_path)], self.config.size)[0]
        return {"image": image, "caption": caption}
