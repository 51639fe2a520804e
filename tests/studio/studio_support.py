"""Helpers for the studio's tests: a real server in a thread, image bytes, the tiny model."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from brushwork.studio.options import Limits


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def make_app(data_dir: Path, model_file: Path, **kwargs):
    """A studio whose only network is the tiny test VGG."""
    from brushwork.engine.cache import Cache
    from brushwork.studio.app import create_app

    kwargs.setdefault("limits", Limits(max_upload_bytes=200_000, max_pixels=250_000))
    kwargs.setdefault("models", {"tiny": str(model_file)})
    kwargs.setdefault("default_model", "tiny")
    return create_app(data_dir, cache=Cache(download=False), log=lambda m: None, **kwargs)


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL.

    Stops by itself when the block ends (should_exit, then the thread is joined).
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the studio server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.state.broker.close()  # end open event streams so the stop is quick
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the studio server did not stop"
