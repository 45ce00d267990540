"""Built-in plugin: the ``open-clip`` encoder (CLIP from the open_clip package).

Registered through the ``unclip`` entry point ``open-clip`` exactly as a third-party plugin
would be. Importing this module is cheap: open_clip itself (seconds to import) is imported
only when a config is validated or an encoder is built.
"""
from __future__ import annotations

from unclip_core import hookimpl

from .config import OpenClipConfig
from .encoder import OpenClipEncoder

__all__ = ["OpenClipConfig", "OpenClipEncoder", "build"]


def build(config: OpenClipConfig) -> OpenClipEncoder:
    """Build an :class:`OpenClipEncoder` (random weights unless ``checkpoint`` is given)."""
    return OpenClipEncoder(config)


@hookimpl
def register_encoders(register) -> None:
    register(
        "open-clip",
        build,
        OpenClipConfig,
        summary="CLIP text/image encoder from open_clip (named architecture or inline config; offline).",
    )
