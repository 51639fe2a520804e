"""``brushwork studio``: start the local web studio and serve until Ctrl-C.

User mistakes (a port in use, a data folder that cannot be written, a missing weights
file) are a BrushworkError, which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import BrushworkError
from .options import Limits

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = Limits.max_upload_bytes / (1024 * 1024)
DEFAULT_MAX_PIXELS = Limits.max_pixels
DEFAULT_QUOTA_GB = Limits.upload_quota_bytes / 1024 ** 3


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


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``studio`` subcommand to the main CLI's subparsers."""
    p = sub.add_parser(
        "studio", help="a local web studio: live preview, queue, gallery, HTTP API",
        description="Start the web studio on this machine and print its address. "
                    "Ctrl-C stops it; a job still running is marked interrupted.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; "
                        "anything else lets other machines in, with no login)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help=f"where uploads, results and the gallery database live "
                        f"(default: {default_data_dir()})")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload in megabytes (default: {DEFAULT_MAX_UPLOAD_MB:g})")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"largest upload in pixels (default: {DEFAULT_MAX_PIXELS})")
    p.add_argument("--upload-quota-gb", type=float, default=DEFAULT_QUOTA_GB, metavar="GB",
                   help=f"what all stored uploads may take, in gigabytes (default: "
                        f"{DEFAULT_QUOTA_GB:g}); past it an upload is refused until some are "
                        "deleted")
    p.add_argument("--model", metavar="PATH", action="append", default=[],
                   help="a local weights file the page may use (repeatable); the first one "
                        "is the default model")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=run)
    return p


def _models(paths: list[str]) -> tuple[dict[str, str], str | None]:
    from ..weights import SOURCES, load_weights

    models = {name: name for name in SOURCES}
    default = None
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_file():
            raise BrushworkError(f"--model {given!r} is not a file")
        load_weights(str(path))  # a bad file fails now, in one line, not in the first job
        name = path.name if path.name not in models else f"file:{path.name}"
        models[name] = str(path.resolve())
        default = default or name
    return models, default


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


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise BrushworkError(f"the studio needs fastapi, uvicorn and python-multipart "
                             f"({e.name} is missing); pip install them") from None
    from ..engine import Cache, resolve_device

    if not args.max_upload_mb > 0 or args.max_upload_mb > 10_000:
        raise BrushworkError(f"--max-upload-mb must be between 0 and 10000, not "
                             f"{args.max_upload_mb:g}")
    if args.max_pixels <= 0:
        raise BrushworkError(f"--max-pixels must be positive, not {args.max_pixels}")
    if not args.upload_quota_gb > 0:
        raise BrushworkError(f"--upload-quota-gb must be positive, not {args.upload_quota_gb:g}")
    resolve_device(args.device)
    models, default_model = _models(args.model)
    data = Path(args.data).expanduser() if args.data else default_data_dir()
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels,
                    upload_quota_bytes=int(args.upload_quota_gb * 1024 ** 3))
    app = create_app(data, cache=Cache(download=False), limits=limits, models=models,
                     default_model=default_model, device=args.device, host=args.host)
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]

    broker = app.state.broker

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            broker.close()  # end the event streams, or the graceful stop waits on them
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    if not _is_loopback(args.host):
        print(f"brushwork studio: warning: listening on {args.host}, so other machines can "
              "reach it; it has no login: anyone who can connect can use it and see its "
              "pictures", file=sys.stderr)
    print(f"brushwork studio on {url_for(args.host, port)}", flush=True)
    print(f"data: {data}   (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after stopping
        pass
    finally:
        sock.close()
    print("brushwork studio stopped", file=sys.stderr)
    return 0
