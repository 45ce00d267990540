"""``unclip serve``: the web page and JSON API (:mod:`unclip_core.serve`).

Its own module, and everything heavy (FastAPI, uvicorn, torch) is imported only when the
command runs, so ``unclip --help`` stays quick and works without the ``serve`` extra.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket

from unclip_core.errors import InputError

DEFAULT_PORT = 7860


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page and JSON API for every operation (needs the 'serve' extra)",
        description="Load recipes once and serve a web page at http://HOST:PORT/ and a JSON API under /api "
        "(OpenAPI at /docs). Binds to 127.0.0.1 unless told otherwise; never opens a public link.",
    )
    p.add_argument(
        "-r", "--recipe", action="append", default=None,
        help="recipe file or shipped recipe name; repeat to offer several in the page's picker (default: shapes)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("--max-queue", type=int, default=32, help="requests that may wait; more are answered 503 (default: 32)")
    p.add_argument(
        "--batch-window-ms", type=float, default=20.0,
        help="how long a generate request waits for others to batch with (default: 20)",
    )
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides for every served recipe")
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_queue < 1:
        raise InputError(f"--max-queue must be at least 1, got {args.max_queue}")
    if not 0 <= args.batch_window_ms <= 10_000:  # also refuses nan
        raise InputError(f"--batch-window-ms must be between 0 and 10000, got {args.batch_window_ms}")
    try:
        import uvicorn

        from unclip_core.serve.app import create_app
    except ModuleNotFoundError as exc:
        raise InputError(f"unclip serve needs the 'serve' extra ({exc.name} is missing): pip install 'unclip[serve]'") from None
    recipes = args.recipe or ["shapes"]
    sock = _listening_socket(args.host, args.port)  # a port in use is one line, before any loading
    with sock:
        app = create_app(recipes, overrides=args.overrides, max_queue=args.max_queue, window_s=args.batch_window_ms / 1000)
        shown = f"[{args.host}]" if _is_ipv6(args.host) else args.host
        print(f"unclip: serving {', '.join(recipes)} at http://{shown}:{args.port}/ (API under /api, docs at /docs)", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port or --host)") from None
    return sock


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
