"""``brushwork studio``: start the local web studio and serve until Ctrl-C.

The options are checked here; brushwork.studio.app builds the application and
brushwork.studio.server serves it.  User mistakes (a port in use, a data folder that
cannot be written, a missing weights file) are a BrushworkError, which the main CLI
prints as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brushwork.errors import BrushworkError
from brushwork.studio.options import Limits
from brushwork.studio.server import default_data_dir, serve

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = Limits.max_upload_bytes / (1024 * 1024)
DEFAULT_MAX_PIXELS = Limits.max_pixels
DEFAULT_CLIP_MB = Limits.max_clip_bytes / (1024 * 1024)
DEFAULT_QUOTA_GB = Limits.upload_quota_bytes / 1024 ** 3


HELP = "a local web studio: live preview, queue, gallery, HTTP API"
DESCRIPTION = ("Start the web studio on this machine and print its address. "
               "Ctrl-C stops it; a job still running is marked interrupted.")
# A long-running server: freed memory goes back to the system (brushwork.commands.entry).
ONE_SHOT = False


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--max-clip-mb", type=float, default=DEFAULT_CLIP_MB, metavar="MB",
                   help=f"largest uploaded video (a clip) in megabytes (default: "
                        f"{DEFAULT_CLIP_MB:g})")
    p.add_argument("--max-clip-seconds", type=float, default=Limits.max_clip_seconds,
                   metavar="S", help=f"longest uploaded video in seconds (default: "
                                     f"{Limits.max_clip_seconds:g})")
    p.add_argument("--max-clip-frames", type=int, default=Limits.max_clip_frames, metavar="N",
                   help=f"most frames a clip may have or a clip job paint (default: "
                        f"{Limits.max_clip_frames})")
    p.add_argument("--max-clip-pixels", type=int, default=Limits.max_clip_pixels, metavar="N",
                   help=f"largest frame of an uploaded video in pixels (default: "
                        f"{Limits.max_clip_pixels}, 1280x720)")
    p.add_argument("--model", metavar="PATH", action="append", default=[],
                   help="a local weights file the page may use (repeatable); the first one "
                        "is the default model")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def _models(paths: list[str]) -> tuple[dict[str, str], str | None]:
    from brushwork.io.weights import SOURCES, load_weights

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


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (checked here: serve() needs it)

        from brushwork.studio.app import create_app
    except ImportError as e:
        raise BrushworkError(f"the studio needs fastapi, uvicorn and python-multipart "
                             f"({e.name} is missing); pip install them") from None
    from brushwork.engine.cache import Cache
    from brushwork.engine.device import resolve_device

    if not args.max_upload_mb > 0 or args.max_upload_mb > 10_000:
        raise BrushworkError(f"--max-upload-mb must be between 0 and 10000, not "
                             f"{args.max_upload_mb:g}")
    if args.max_pixels <= 0:
        raise BrushworkError(f"--max-pixels must be positive, not {args.max_pixels}")
    for flag, value, most in (("--max-clip-mb", args.max_clip_mb, 10_000),
                              ("--max-clip-seconds", args.max_clip_seconds, 3600),
                              ("--max-clip-frames", args.max_clip_frames, 100_000),
                              ("--max-clip-pixels", args.max_clip_pixels, args.max_pixels)):
        if not 0 < value <= most:
            raise BrushworkError(f"{flag} must be above 0 and at most {most:g}, not {value:g}")
    if not args.upload_quota_gb > 0:
        raise BrushworkError(f"--upload-quota-gb must be positive, not {args.upload_quota_gb:g}")
    resolve_device(args.device)
    models, default_model = _models(args.model)
    data = Path(args.data).expanduser() if args.data else default_data_dir()
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels,
                    upload_quota_bytes=int(args.upload_quota_gb * 1024 ** 3),
                    max_clip_bytes=int(args.max_clip_mb * 1024 * 1024),
                    max_clip_seconds=args.max_clip_seconds,
                    max_clip_frames=args.max_clip_frames, max_clip_pixels=args.max_clip_pixels)
    app = create_app(data, cache=Cache(download=False), limits=limits, models=models,
                     default_model=default_model, device=args.device, host=args.host)
    return serve(app, args.host, args.port, data)
