"""What ``runtime.precision: auto`` picks on a CPU, decided by measuring, once per machine.

CPU flags do not say what a precision does. On an AMD EPYC with AVX-512 BF16 (Zen 4, no
AMX) oneDNN ignored ``torch.backends.mkldnn.*.fp32_precision = "bf16"`` and computed exact
fp32, so ``bf16-matmul`` was fp32 under another name, while bf16 autocast ran 1.9x faster
than fp32; on an AMX CPU both are real and autocast is the fastest; on an AVX2-only CPU bf16
autocast is emulated and 3.6-6x *slower* than fp32 (docs/benchmarks.md, "Choosing a
precision"). So ``auto`` runs a small probe instead: the same convolution and matrix product
in each candidate mode, timed round-robin (the best of several rounds, so that another
process's load hurts every mode alike), and compared with fp32's result.

A mode is *real* when its result differs from fp32's (oneDNN really rounded), and it is
*picked* when it is real and at least :data:`REQUIRED_SPEEDUP` times as fast as fp32; among
the picked, the fastest wins; with none, fp32. Both candidates keep the trained shapes
model's images far above 30 dB against fp32 (bf16 autocast 50.7 dB, bf16-matmul 57.8 dB:
docs/benchmarks.md, "Two kinds of bf16"; ``tests/test_precision.py`` checks the 30 dB floor
on every CPU), so speed decides between them.

The probe takes a fraction of a second and is cached in the user's cache folder
(``$UNCLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/unclip``, else ``~/.cache/unclip``), keyed by the
CPU model and flags, torch's version and the thread count; ``unclip doctor`` shows the figures
and the decision, and ``unclip doctor --reprobe`` measures again.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from unclip_core.atomic import atomic_write
from unclip_core.precision import PRECISIONS, Precision, onednn_bf16_math

Probe = Callable[[], "ProbeResult"]

CANDIDATES: tuple[Precision, ...] = ("bf16", "bf16-matmul")
"""The modes ``auto`` may pick on a CPU besides fp32."""

REQUIRED_SPEEDUP = 1.25
"""A candidate must run the probe this many times as fast as fp32 to be picked: smaller gains
are within what one CPU's timing noise and the probe's small sizes can tell apart."""

CHANGED = 1e-6
"""Relative difference from fp32 above which a mode counts as really computing in bf16 (bf16
rounds at 2**-8 = 4e-3; an fp32 kernel reordering its sums differs by about 1e-7)."""

CACHE_FILE = "precision-probe.json"
_FORMAT = 1


@dataclass(frozen=True)
class ModeFigures:
    """One mode's probe figures: best seconds for the workload, and how far from fp32."""

    seconds: float
    relative_difference: float

    @property
    def real(self) -> bool:
        return self.relative_difference > CHANGED


@dataclass(frozen=True)
class ProbeResult:
    """What the probe measured on one machine; :attr:`choice` is what ``auto`` picks there."""

    machine: str
    torch_version: str
    threads: int
    fp32_seconds: float
    modes: dict[str, ModeFigures]
    measured_at: str = ""
    from_cache: bool = field(default=False, compare=False)

    def speedup(self, mode: str) -> float:
        return self.fp32_seconds / self.modes[mode].seconds

    def acceptable(self, mode: str) -> bool:
        """Real (oneDNN changed the result) and clearly faster than fp32."""
        figures = self.modes.get(mode)
        return figures is not None and figures.real and self.speedup(mode) >= REQUIRED_SPEEDUP

    @property
    def choice(self) -> Precision:
        picked = [mode for mode in CANDIDATES if self.acceptable(mode)]
        return min(picked, key=lambda mode: self.modes[mode].seconds) if picked else "fp32"  # type: ignore[return-value]

    def reason(self) -> str:
        """One line on why :attr:`choice` won."""
        if self.choice != "fp32":
            return f"the fastest mode that computes in bf16 here ({self.speedup(self.choice):.2f}x fp32's speed)"
        why = []
        for mode in CANDIDATES:
            figures = self.modes.get(mode)
            if figures is None:
                continue
            if not figures.real:
                why.append(f"{mode} computes exact fp32 here")
            else:
                why.append(f"{mode} runs at {self.speedup(mode):.2f}x fp32's speed (needs {REQUIRED_SPEEDUP}x)")
        return "; ".join(why) or "no candidate was measured"

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("from_cache")
        return data

    @classmethod
    def from_json(cls, data: dict) -> ProbeResult:
        modes = {name: ModeFigures(float(m["seconds"]), float(m["relative_difference"])) for name, m in data["modes"].items()}
        return cls(str(data["machine"]), str(data["torch_version"]), int(data["threads"]), float(data["fp32_seconds"]),
                   modes, str(data.get("measured_at", "")), from_cache=True)


# ----------------------------------------------------------------------------- measuring
@contextlib.contextmanager
def _in_mode(mode: str) -> Iterator[None]:
    if mode == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    elif mode == "bf16-matmul":
        with onednn_bf16_math():
            yield
    else:
        yield


def _workload() -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A 3x3 convolution in the channels-last layout the pipelines run in, and a linear layer,
    at the widths of the shapes model's and Karlo's medium UNets (a few ms each in fp32)."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    linear = torch.nn.Linear(1024, 1024)
    with torch.no_grad():
        for parameter in (*conv.parameters(), *linear.parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    image = torch.randn(2, 128, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    rows = torch.randn(256, 1024, generator=generator)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        return conv(image), linear(rows)

    return run


def _relative_difference(got: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    return max(float((g.float() - r).norm() / r.norm()) for g, r in zip(got, reference))


def measure(rounds: int = 5) -> ProbeResult:
    """Run the probe now (about 0.1-0.5 s; more where bf16 is emulated)."""
    run = _workload()
    modes = ("fp32", *CANDIDATES)
    best = {mode: float("inf") for mode in modes}
    outputs: dict[str, tuple[torch.Tensor, ...]] = {}
    with torch.no_grad():
        for mode in modes:  # warm-up: oneDNN builds its kernels on first use
            with _in_mode(mode):
                outputs[mode] = run()
        for _ in range(rounds):
            for mode in modes:
                with _in_mode(mode):
                    start = time.perf_counter()
                    run()
                    best[mode] = min(best[mode], time.perf_counter() - start)
    return ProbeResult(
        machine=machine_fingerprint(),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        fp32_seconds=best["fp32"],
        modes={mode: ModeFigures(best[mode], _relative_difference(outputs[mode], outputs["fp32"])) for mode in CANDIDATES},
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def onednn_bf16_rounds() -> bool:
    """Whether oneDNN really computes in bf16 under ``bf16-matmul`` here (a single uncached
    convolution, no timing): what tests use to decide which branch this CPU is on."""
    run = _workload()
    with torch.no_grad():
        fp32 = run()
        with onednn_bf16_math():
            mixed = run()
    return _relative_difference(mixed, fp32) > CHANGED


# ----------------------------------------------------------------------------- caching
def cpu_model() -> str:
    """The CPU's model name as Linux reports it (``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_fingerprint() -> str:
    """What the probe's answer depends on: the CPU (model and flags), torch and the threads."""
    flags = ""
    with contextlib.suppress(OSError):
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    digest = hashlib.sha256(f"{cpu_model()}|{flags}|{torch.__version__}|{torch.get_num_threads()}".encode()).hexdigest()
    return digest[:16]


def cache_dir() -> Path:
    if os.environ.get("UNCLIP_CACHE_DIR"):
        return Path(os.environ["UNCLIP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unclip"


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    """The cache's entries, or none where it is missing, unreadable or of another format (a
    corrupt cache costs one new probe, never an error)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


_MEMO: dict[str, ProbeResult] = {}


def cpu_probe(refresh: bool = False) -> ProbeResult:
    """This machine's probe: from memory, else the cache, else measured now and cached.

    A cache folder that cannot be written (read-only home, full disk) is not an error: the
    result is kept for this process and measured again by the next."""
    key = machine_fingerprint()
    if not refresh and key in _MEMO:
        return _MEMO[key]
    path = cache_path()
    entries = _read_cache(path)
    result = None
    if not refresh and key in entries:
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            result = ProbeResult.from_json(entries[key])
    if result is None:
        result = measure()
        entries[key] = result.to_json()
        text = json.dumps({"format": _FORMAT, "entries": entries}, indent=1, sort_keys=True)
        with contextlib.suppress(OSError):
            atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _MEMO[key] = result
    return result


# ----------------------------------------------------------------------------- deciding
def resolve_precision(setting: str, device: str | torch.device, probe: Probe | None = None) -> Precision:
    """The recipe's ``runtime.precision`` made concrete.

    ``auto`` becomes, on the CPU, what ``probe`` (default: this machine's cached
    :func:`cpu_probe`) chooses; on a CUDA device bf16 autocast where the GPU supports bf16;
    fp32 elsewhere. The others are kept as written (``bf16-matmul`` only on the CPU, the one
    device whose kernels take it). Tests pass ``probe`` to take either branch on any CPU."""
    device_type = torch.device(device).type
    if setting == "auto":
        if device_type == "cpu":
            return (probe or cpu_probe)().choice
        if device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if setting not in PRECISIONS:
        raise ValueError(f"runtime.precision must be one of {', '.join(PRECISIONS)} or auto, not {setting!r}")
    if setting == "bf16-matmul" and device_type != "cpu":
        raise ValueError(
            f"runtime.precision bf16-matmul is oneDNN's, for the CPU; on {device_type} use bf16 (autocast) or fp32"
        )
    return setting  # type: ignore[return-value]
