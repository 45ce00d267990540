"""Run the app on a real socket in a background thread (the load test, the browser test and
bench/serve_throughput.py), on 127.0.0.1 and a free port the OS picks."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", start_timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the server's base URL (``http://127.0.0.1:PORT``) while it serves ``app``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=128))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
