"""What a web request may ask for: the options (derived from Settings) and the limits.

Every Settings field is a web option except the server-only and region ones below;
each option's JSON type, default and choices come from
:func:`brushwork.engine.settings.option_specs`, the same place the CLI's flags come from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brushwork.engine.network import check_layers
from brushwork.engine.settings import OptionSpec, Settings, option_specs
from brushwork.errors import BrushworkError
from brushwork.io.masks import check_aspect
from brushwork.io.weights import SOURCES, locate

MAX_STYLES = 8
# The largest upload, in pixels.  Lower than the library's DEFAULT_MAX_PIXELS (the
# user's own files): anyone who can reach the studio can send one.
UPLOAD_MAX_PIXELS = 25_000_000

# Settings a request may not set: the operator chooses them (``brushwork studio
# --device``, ``--max-pixels``; the memory budget is the server's default), since they
# touch this machine's devices and memory.
# ``model`` and ``init`` are web options, but only by name: a model the operator offered,
# and "content" or "noise", never a path on the server's disk.
SERVER_ONLY = frozenset({"device", "max_pixels", "max_memory"})
# Masks and region maps name files on the disk where the run happens: the studio does not
# take them (nor the mode of masks it cannot have).
REGION_OPTIONS = frozenset({"style_masks", "region_map", "region_colors", "mask_mode"})
WEB_OPTIONS: dict[str, OptionSpec] = {
    spec.name: spec for spec in option_specs()
    if spec.name not in SERVER_ONLY | REGION_OPTIONS}
WEB_INITS = ("content", "noise")
MAX_TEXT = 100  # characters in a string option
MAX_ITEMS = 64  # entries in a list option
MAX_NAME = 32  # characters in a layer name
# What a job that ran out of memory suggests: the options a request may set.
MEMORY_ADVICE = "try a smaller size, or a tile_size (a multiple of 16, such as 256)"


class OptionsError(ValueError):
    """A job request the studio refuses (HTTP 422)."""


@dataclass
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = UPLOAD_MAX_PIXELS
    max_size: int = 2048  # long side of an output
    max_iterations: int = 5000
    max_queued: int = 100
    max_plan_pictures: int = 48  # photos x paintings x strengths in one plan (plans.py)
    # Decoding an upload, in a process of its own (decoder.py).  A 25-megapixel PNG
    # decodes and re-encodes in under 10 s and 0.5 GB on a slow machine.
    decode_seconds: float = 30.0  # wall time, then the process is killed (422)
    decode_memory: int = 1024 * 1024 * 1024  # address space it may add, Linux only (413)
    max_decodes: int = 2  # decoding at once; more wait for a turn ...
    decode_wait_seconds: float = 10.0  # ... this long, then get a 503 with Retry-After
    # What the stored uploads may take, over all (507 past it): bytes of the stored
    # images (thumbnails not counted: a few kB each) and their number.
    upload_quota_bytes: int = 2 * 1024 * 1024 * 1024
    max_uploads: int = 1000
    # Open event streams (/api/events, /api/jobs/ID/events): each holds a connection and
    # gets every event, so idle ones slow every job.  A page opens one.
    max_streams: int = 64
    max_streams_per_client: int = 16  # per client address
    # Estimates (POST /api/estimate, and the one POST /api/jobs makes before queueing):
    # sized from the stored width and height, never by decoding a picture; they may load
    # the network or measure this machine (seconds), so only this many run at once ...
    max_estimates: int = 2
    estimate_wait_seconds: float = 10.0  # ... the rest wait this long, then get a 503
    # Clips (clips.py): an uploaded video is kept as sent, so it is bounded by its bytes,
    # its length and its frames' size, all read in the decoder's bounded child; a clip
    # job paints at most max_clip_frames frames (--fps can repeat frames).
    max_clip_bytes: int = 50 * 1024 * 1024
    max_clip_seconds: float = 30.0
    max_clip_frames: int = 300
    max_clip_pixels: int = 1280 * 720  # of a frame, as the video stores it


def absent_weights(name: str, target: str) -> str | None:
    """Why model ``name`` (stylize's ``target``) cannot be used now, or None if its weights
    are on this machine.  The studio never fetches: that is the operator's deliberate
    ``brushwork models --fetch``, not something a request can start."""
    if target in SOURCES:
        if locate(target) is None:
            return f"weights not installed; run brushwork models --fetch {target} on the server"
        return None
    if not Path(target).is_file():
        return f"the weights file of model {name!r} is no longer on the server"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_ok(spec: OptionSpec, value: Any) -> bool:
    """Whether a JSON value has the type of ``spec`` (None only where Settings allows it)."""
    if value is None:
        return spec.optional
    if spec.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.kind == "float":
        return _number(value) and math.isfinite(value)
    if spec.kind == "bool":
        return isinstance(value, bool)
    if spec.kind == "str":
        return isinstance(value, str) and len(value) <= MAX_TEXT
    if spec.kind == "floats":
        return isinstance(value, list) and 0 < len(value) <= MAX_ITEMS and all(
            _number(v) for v in value)
    if spec.kind == "strs":
        return isinstance(value, list) and 0 < len(value) <= MAX_ITEMS and all(
            isinstance(v, str) and len(v) <= MAX_NAME for v in value)
    raise AssertionError(f"no JSON check for option kind {spec.kind!r}")


def web_defaults(default_model: str) -> dict[str, Any]:
    """What an empty request paints with, option by option, as JSON."""
    resolved = Settings().to_dict()
    return {name: resolved[name] for name in WEB_OPTIONS} | {"model": default_model}


def check_pictures(content: dict[str, Any], styles: list[dict[str, Any]],
                   masks: list[dict[str, Any]], *, max_pixels: int) -> None:
    """Check a job's uploads from what the store recorded of them at upload (size, and
    each picture's darkest and lightest grey), decoding none: the pixel limit (lowered
    since an upload, perhaps) and the masks' shape.  The run reads the files and checks
    them again.  Raises OptionsError naming the first bad picture by its upload name."""
    named = [("the photo", content), *((f"painting {k}", s) for k, s in enumerate(styles, 1)),
             *((f"style mask {k}", m) for k, m in enumerate(masks, 1))]
    for role, row in named:
        if row.get("video"):
            raise OptionsError(f"{role} '{row['name']}' is a video: a clip is painted as a "
                               "clip job (POST /api/clips)")
        w, h = row["width"], row["height"]
        if w * h > max_pixels:
            raise OptionsError(f"{role} '{row['name']}' is {w}x{h} = {w * h / 1e6:.3g} "
                               f"megapixels, over this studio's limit of "
                               f"{max_pixels / 1e6:.3g}")
    photo = (content["width"], content["height"])
    for k, row in enumerate(masks, 1):
        name = f"style mask {k} '{row['name']}'"
        size = (row["width"], row["height"])
        first = (masks[0]["width"], masks[0]["height"])
        try:
            check_aspect(size, photo, name)
        except BrushworkError as e:
            raise OptionsError(str(e)) from None
        if size != first:
            raise OptionsError(f"{name} is {size[0]}x{size[1]} but style mask 1 is "
                               f"{first[0]}x{first[1]}: the masks must have one size")
        if row.get("grey_max") == 0:
            raise OptionsError(f"{name} is all black: style {k} would paint nowhere "
                               "(white = where a style paints)")


def check_options(options: Any, *, models: dict[str, str], default_model: str,
                  limits: Limits, n_styles: int,
                  arch_of: Callable[[str], str]) -> tuple[dict[str, Any], Settings]:
    """Validate a request's options; return them (model filled in) and the Settings.

    ``models`` maps the names a request may use to what stylize gets; ``arch_of`` gives
    a model name's network (vgg16 or vgg19), whose layer names the request must use.
    Raises OptionsError naming the first bad option.
    """
    if not isinstance(options, dict):
        raise OptionsError("options must be a JSON object")
    for name, value in options.items():
        if name not in WEB_OPTIONS:
            raise OptionsError(f"unknown or server-only option {name!r}; allowed: "
                               f"{', '.join(sorted(WEB_OPTIONS))}")
        if not type_ok(WEB_OPTIONS[name], value):
            raise OptionsError(f"{name} has the wrong type: {value!r}")
    opts = dict(options)
    opts.setdefault("model", default_model)
    if opts["model"] not in models:
        raise OptionsError(f"unknown model {opts['model']!r}; choose one of: "
                           f"{', '.join(models)}")
    missing = absent_weights(opts["model"], models[opts["model"]])
    if missing is not None:
        raise OptionsError(missing)
    if opts.get("init", "content") not in WEB_INITS:
        raise OptionsError("init must be 'content' or 'noise'")
    for name, most in (("size", limits.max_size), ("min_size", limits.max_size),
                       ("iterations", limits.max_iterations)):
        if opts.get(name) is not None and opts[name] > most:
            raise OptionsError(f"{name} {opts[name]} is over this studio's limit of {most}")
    if opts.get("style_weights") is not None and len(opts["style_weights"]) != n_styles:
        raise OptionsError(f"style_weights has {len(opts['style_weights'])} values for "
                           f"{n_styles} paintings")
    run_opts: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                                for k, v in opts.items()}
    run_opts["model"] = models[opts["model"]]
    try:
        settings = Settings(**run_opts)
        arch = arch_of(opts["model"])
        check_layers(arch, settings.content_layers, "content")
        check_layers(arch, settings.style_layers, "style")
    except BrushworkError as e:
        raise OptionsError(str(e)) from None
    # The style image is resized to style_scale times the output's long side: no larger
    # than the largest output this studio paints.
    style_side = settings.style_scale * settings.size
    if style_side > limits.max_size:
        raise OptionsError(f"style_scale {settings.style_scale:g} at size {settings.size} "
                           f"makes the painting {style_side:.0f} px long, over this studio's "
                           f"limit of {limits.max_size}")
    return opts, settings
