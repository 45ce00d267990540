"""How long the ``unclip`` command takes to start, against what it cannot avoid.

Runs, in fresh interpreters and round-robin (so that load on the machine hits each alike):

* ``python -c pass`` — the floor of any Python command;
* ``unclip --version``, ``unclip --help``, ``unclip recipe ls`` — target: within 0.3 s of the floor;
* ``python -c "import torch"`` — what any torch program pays;
* the README's generation in a warm process: the shipped recipe loaded and run once, then
  the README's one-image ``generate`` timed (what the command does that cannot be avoided);
* the README's command itself, ``unclip generate "a red circle to the left of a blue square"`` —
  target: within 1.6x of (import torch + warm generation);
* the floor under that target: a bare ``python`` importing only the third-party modules the
  shipped recipe's components are built from (torch, open_clip, and diffusers' prior and UNet
  models), exiting as ``unclip`` does (``os._exit``, no interpreter teardown). No ``unclip``
  command can start faster than this plus the generation, so (floor + warm generation) /
  (import torch + warm generation) is the best ratio any change to unclip itself can reach.

Each figure is the median over ``--repeats`` rounds of wall seconds and of the process's CPU
seconds (user + system, children included). On a machine other processes load, CPU seconds
are the steadier measure; both are printed with their ratios. ``--phases`` also prints where
one ``unclip generate`` spends its time (imports, building the pipeline, generating, writing).

Usage: ``python bench/startup.py [--repeats 5] [--phases]``.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle to the left of a blue square"  # the README's

WARM_GENERATION = f"""
import time, resource
from unclip_core.recipe.assemble import load_pipeline
pipeline = load_pipeline("shapes")
pipeline.generate([{PROMPT!r}], seed=0)  # warm-up: oneDNN builds its kernels on first use
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu0, t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
pipeline.generate([{PROMPT!r}], seed=0)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t0, usage.ru_utime + usage.ru_stime - cpu0)
"""

# What the shipped recipe's components are built from: the open-clip encoder, the diffusion
# prior (diffusers' PriorTransformer), the decoder (UNet2DConditionModel) and the upsampler
# (UNet2DModel). Imported by their module paths, the cheapest way in.
FLOOR_IMPORTS = """
import os
import torch, open_clip
from diffusers.models.transformers.prior_transformer import PriorTransformer
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.unets.unet_2d import UNet2DModel
os._exit(0)
"""

PHASES = f"""
import sys, time
t = [time.perf_counter()]
import torch
t.append(time.perf_counter())
from unclip_core.recipe.assemble import load_pipeline
from unclip_core.registry import default_registry
default_registry()
t.append(time.perf_counter())
pipeline = load_pipeline("shapes")
t.append(time.perf_counter())
images = pipeline.generate([{PROMPT!r}], seed=0)
t.append(time.perf_counter())
from unclip_core.images import save_png
save_png(images[0], sys.argv[1], {{"prompt": {PROMPT!r}}})
t.append(time.perf_counter())
names = ["import torch", "import plugins (diffusers, open_clip) and discover", "build the pipeline (weights)", "generate (cold)", "write the PNG"]
for name, a, b in zip(names, t, t[1:]):
    print(f"  {{name:<52}} {{b - a:6.2f}} s")
"""


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one child process, and its standard output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", action="store_true", help="also break one `unclip generate` down by phase")
    args = parser.parse_args()

    python = sys.executable
    unclip = shutil.which("unclip", path=str(Path(python).parent)) or shutil.which("unclip")
    if unclip is None:
        raise SystemExit("no `unclip` command beside this Python: install the project (pip install .) first")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = Path(tempfile.mkdtemp()) / "unclip.png"
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "unclip --version": [unclip, "--version"],
        "unclip --help": [unclip, "--help"],
        "unclip recipe ls": [unclip, "recipe", "ls"],
        'python -c "import torch"': [python, "-c", "import torch"],
        "unclip generate (README)": [unclip, "generate", PROMPT, "-o", str(out), "-q"],
        "floor: the recipe's imports": [python, "-c", FLOOR_IMPORTS],
    }
    run([unclip, "doctor"], env)  # the precision probe is measured once per machine, not per command
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    warm_wall: list[float] = []
    warm_cpu: list[float] = []
    for _ in range(args.repeats):
        for name, command in commands.items():
            w, c, _ = run(command, env)
            wall[name].append(w)
            cpu[name].append(c)
        _, _, printed = run([python, "-c", WARM_GENERATION], env)
        w, c = (float(x) for x in printed.split())
        warm_wall.append(w)
        warm_cpu.append(c)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"median of {args.repeats} rounds; seconds wall / CPU")
    floor_wall, floor_cpu = median(wall["python -c pass"]), median(cpu["python -c pass"])
    for name in commands:
        line = f"  {name:<28} {median(wall[name]):7.3f} / {median(cpu[name]):7.3f}"
        if name.startswith("unclip") and "generate" not in name:
            line += (f"   over python -c pass: {median(wall[name]) - floor_wall:+.3f} / "
                     f"{median(cpu[name]) - floor_cpu:+.3f} (target <= 0.3)")
        print(line)
    print(f"  {'warm generation (1 image)':<28} {median(warm_wall):7.3f} / {median(warm_cpu):7.3f}")
    torch_wall, torch_cpu = median(wall['python -c "import torch"']), median(cpu['python -c "import torch"'])
    cli_wall, cli_cpu = median(wall["unclip generate (README)"]), median(cpu["unclip generate (README)"])
    print(f"  README generate / (import torch + warm generation): "
          f"{cli_wall / (torch_wall + median(warm_wall)):.2f} wall, {cli_cpu / (torch_cpu + median(warm_cpu)):.2f} CPU (target <= 1.6)")
    floor_imports_wall, floor_imports_cpu = median(wall["floor: the recipe's imports"]), median(cpu["floor: the recipe's imports"])
    print(f"  floor: (the recipe's imports + warm generation) / (import torch + warm generation): "
          f"{(floor_imports_wall + median(warm_wall)) / (torch_wall + median(warm_wall)):.2f} wall, "
          f"{(floor_imports_cpu + median(warm_cpu)) / (torch_cpu + median(warm_cpu)):.2f} CPU")
    if args.phases:
        print("one `unclip generate`, by phase (wall):")
        print(run([python, "-c", PHASES, str(out)], env)[2], end="")


if __name__ == "__main__":
    main()
