"""Checking ``runtime.device`` before any weights load.

torch accepts any device name until the first tensor moves there; a recipe naming ``cuda`` on
a machine without a GPU would fail minutes later, deep inside a model's ``.to()``, with a
driver message. :func:`check_device` says it at once, in one line.
"""
from __future__ import annotations

import torch


def check_device(name: str) -> torch.device:
    """``name`` as a :class:`torch.device` this process can compute on, or a ``ValueError``
    saying why not (not a device name, a device with no data, a backend that is not present)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"runtime.device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "meta":
        raise ValueError("runtime.device meta holds no data and cannot compute images; use cpu or a GPU")
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None) if device.type != "mps" else torch.backends.mps
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"runtime.device is {name} but this machine has no usable {device.type} device (torch {torch.__version__})")
    count = getattr(backend, "device_count", None)
    if device.index is not None and count is not None and device.index >= count():
        raise ValueError(f"runtime.device is {name} but this machine has {count()} {device.type} device(s)")
    return device
