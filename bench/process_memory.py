"""A process's resident memory, for the benches that compare peak memory in child processes."""
from __future__ import annotations

import resource
from pathlib import Path


def rss_mib(field: str = "VmHWM") -> float:
    """This process's resident memory in MiB: its peak (``VmHWM``) or its current size
    (``VmRSS``), as the kernel counts them. Not ``ru_maxrss``: Linux carries it across
    ``exec`` from the forked copy of the parent, so a child started by a large parent reports
    the parent's peak. ``ru_maxrss`` only where there is no ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
