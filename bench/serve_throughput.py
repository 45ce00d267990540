"""What batching buys ``unclip serve``: requests per second with 8 concurrent clients against
the same requests sent one at a time, both to one server on 127.0.0.1 in this process.

Each request is ``POST /api/generate`` with one image and its own seed. One at a time, the
worker runs batches of one; with 8 clients in flight it batches the queued requests (the
batching window and the queue behind a running batch gather them). Prints requests/s for
both, their ratio, and the batch sizes the worker ran; ``--max-batch 1`` runs the concurrent
clients unbatched (the queue alone), to separate batching's gain from overlapping HTTP work.
Usage: ``python bench/serve_throughput.py [--requests 32] [--clients 8] [--max-batch 32] [--set KEY=VALUE ...]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import torch

from unclip_core.serve.app import create_app
from unclip_core.serve.server import background_server

PROMPTS = ["a red circle", "a blue square above a yellow triangle", "a green square", "an orange circle below a purple square"]


def ask(url: str, index: int) -> None:
    body = json.dumps({"prompt": PROMPTS[index % len(PROMPTS)], "seed": index}).encode()
    request = urllib.request.Request(f"{url}/api/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        assert answer.status == 200


def rate(url: str, requests: int, clients: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: ask(url, i), range(requests)))
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=32, help="images per batch (1: no batching)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    app = create_app(["shapes"], overrides=args.overrides, window_s=args.window_ms / 1000, max_batch_images=args.max_batch)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; recipe shapes {' '.join(args.overrides)}")
    with background_server(app) as url:
        ask(url, 0)  # warm-up
        worker = app.state.worker
        one = rate(url, args.requests, 1)
        worker.batches.clear()
        many = rate(url, args.requests, args.clients)
        sizes = Counter(worker.batches)
    print(f"one at a time:      {one:.2f} requests/s")
    print(f"{args.clients} concurrent clients: {many:.2f} requests/s (batches run: "
          f"{', '.join(f'{count}×{size}' for size, count in sorted(sizes.items()))})")
    print(f"ratio: {many / one:.2f}×")


if __name__ == "__main__":
    main()
