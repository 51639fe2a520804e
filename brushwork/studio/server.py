"""Serving the studio: the data folder, the listening socket, the server's life until
Ctrl-C (a job still running is then marked interrupted).

User mistakes (a port in use, no permission) are a one-line BrushworkError.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any

from brushwork.errors import BrushworkError


def default_data_dir() -> Path:
    """``$BRUSHWORK_STUDIO_DATA``, else the per-user data folder + brushwork/studio."""
    env = os.environ.get("BRUSHWORK_STUDIO_DATA")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "brushwork" / "studio"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line BrushworkError saying why not."""
    if not 0 <= port <= 65535:
        raise BrushworkError(f"--port must be 0..65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BrushworkError(f"cannot listen on --host {host!r} ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise BrushworkError(f"port {port} on {host} is in use; choose another with --port "
                                 "(0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise BrushworkError(f"no permission to listen on port {port}; use a port above "
                                 "1023") from None
        raise BrushworkError(f"cannot listen on {host} port {port} ({e.strerror})") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve(app: Any, host: str, port: int, data: Path) -> int:
    """Serve ``app`` (brushwork.studio.app.create_app) on ``host``:``port`` until Ctrl-C."""
    import uvicorn

    sock = bind(host, port)
    port = sock.getsockname()[1]

    broker = app.state.broker

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            broker.close()  # end the event streams, or the graceful stop waits on them
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    if not _is_loopback(host):
        print(f"brushwork studio: warning: listening on {host}, so other machines can "
              "reach it; it has no login: anyone who can connect can use it and see its "
              "pictures", file=sys.stderr)
    print(f"brushwork studio on {url_for(host, port)}", flush=True)
    print(f"data: {data}   (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after stopping
        pass
    finally:
        sock.close()
    print("brushwork studio stopped", file=sys.stderr)
    return 0
