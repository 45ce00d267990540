"""Summarise training runs for docs/benchmarks.md: one row per run folder's ``log.jsonl``.

Usage: ``python bench/training_report.py runs/shapes-clip runs/shapes-prior ...``. Prints a
Markdown table of stage, steps, batch, wall time, mean samples/s and the run's last figures.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def summarise(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    starts = [e for e in lines if e.get("event") == "start"]
    steps = [e for e in lines if "elapsed_s" in e]
    end = next((e for e in reversed(lines) if e.get("event") == "end"), None)
    # A resumed run starts a new clock: add each segment's last elapsed time.
    wall, last = 0.0, None
    for entry in steps:
        if last is not None and entry["elapsed_s"] < last["elapsed_s"]:
            wall += last["elapsed_s"]
        last = entry
    wall += last["elapsed_s"] if last else 0.0
    batch = starts[0].get("effective_batch") if starts else None
    final_step = (end or last or {}).get("step", 0)
    figures = {k: v for k, v in (end or {}).items() if k.startswith("preview_")}
    return {"run": run.name, "stage": starts[0].get("stage") if starts else "?", "steps": final_step, "batch": batch,
            "minutes": wall / 60, "samples_per_s": final_step * (batch or 0) / wall if wall else 0.0,
            "segments": len(starts), "figures": figures, "loss": (end or last or {}).get("loss")}


def main(argv: list[str]) -> None:
    print("| run | stage | steps × batch | wall time | samples/s | segments | final loss | preview |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in argv:
        s = summarise(Path(folder))
        figures = ", ".join(f"{k.removeprefix('preview_')} {v:.3f}" for k, v in s["figures"].items())
        print(f"| {s['run']} | {s['stage']} | {s['steps']} × {s['batch']} | {s['minutes']:.1f} min | {s['samples_per_s']:.0f} | "
              f"{s['segments']} | {s['loss']:.4f} | {figures} |")


if __name__ == "__main__":
    main(sys.argv[1:])
