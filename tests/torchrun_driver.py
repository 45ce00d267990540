"""``unclip`` under torchrun, recording what each rank did (for tests/test_distributed.py).

Usage: ``torchrun ... tests/torchrun_driver.py RECORD_DIR unclip ARGS...``. Each rank writes
``RECORD_DIR/rank<r>.safetensors`` (its model's weights after the run) and
``RECORD_DIR/rank<r>.jsonl`` (one line per training micro-batch: step, global number, and
the dataset indices or the shard keys and epochs it held) and ``RECORD_DIR/rank<r>.writes.jsonl``
(the names of the files each atomic write renamed into place: what ``unclip generate
--prompts`` wrote). The loop itself is untouched: only its component builder, batch sources
and the atomic writer are wrapped.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from unclip_core import atomic
from unclip_core.cli.main import main
from unclip_core.training import loop

record = Path(sys.argv[1])
rank = int(os.environ.get("RANK", "0"))
models = []
log = open(record / f"rank{rank}.jsonl", "w", encoding="utf-8")

real_build = loop.build_component


def build(resolved, *args, **kwargs):
    built = real_build(resolved, *args, **kwargs)
    if kwargs.get("trainable"):
        models.append(built)
    return built


def recording(cls):
    real_step = cls.step

    def step(self, number):
        parts = real_step(self, number)
        for k, raw in parts:
            entry = {"step": number, "micro": k}
            if "key" in raw:
                entry.update(keys=raw["key"], epochs=raw["epoch"])
            else:
                entry.update(indices=raw["index"])
            log.write(json.dumps(entry) + "\n")
        return parts

    cls.step = step


writes = open(record / f"rank{rank}.writes.jsonl", "a", encoding="utf-8")
real_write_all = atomic.atomic_write_all


def write_all(targets):
    done = real_write_all(targets)
    writes.write(json.dumps([Path(path).name for path in done]) + "\n")
    writes.flush()
    return done


atomic.atomic_write_all = write_all
loop.build_component = build
recording(loop.MapBatches)
recording(loop.StreamBatches)
status = main(sys.argv[2:])
log.close()
if models:
    save_file({k: v.detach().contiguous() for k, v in models[0].state_dict().items()}, str(record / f"rank{rank}.safetensors"))
sys.exit(status)
