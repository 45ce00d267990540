"""A process's resident memory, for the benches that compare peak memory in child processes,
and the running of those children."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
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


def peak_rss_in_child(script: str | Path, child: str, folder: str | Path, *options: str) -> dict[str, float]:
    """Run ``script --child CHILD --child-folder FOLDER OPTIONS...`` in a fresh Python and return
    the figures it printed as its last JSON line (``{"peak_rss_mib": ...}``): a child process,
    because a process's peak cannot be reset and the parent holds every pipeline at once.
    Raises :class:`ChildFailed` with the child's last line of stderr when it fails."""
    result = subprocess.run([sys.executable, str(script), "--child", child, "--child-folder", str(folder), *options],
                            capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        errors = result.stderr.strip().splitlines()
        raise ChildFailed(errors[-1] if errors else f"exit status {result.returncode}, no figures printed")
    return json.loads(lines[-1])


class ChildFailed(RuntimeError):
    """A bench's child process exited with an error or printed no figures."""
