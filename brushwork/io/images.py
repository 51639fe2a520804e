"""Reading, checking and writing images, and converting them to and from tensors.

Inputs become 8-bit RGB :class:`PIL.Image.Image` objects; the engine works on
float32 tensors of shape (1, 3, H, W) holding 0..255 pixel values.

Every problem with a file is raised as a one-line :class:`ImageError` (inputs)
or :class:`OutputError` (outputs) that names the role and the path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from brushwork.errors import BrushworkError, ImageError, OutputError
from brushwork.io import deep, profiles

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "INPUT_FORMATS",
    "MIN_SIDE",
    "OUTPUT_FORMATS",
    "BrushworkWarning",
    "load_image",
    "load_image_bytes",
    "check_output_path",
    "save_image",
    "read_metadata",
    "to_tensor",
    "to_image",
    "resize_to",
    "scaled_size",
]

DEFAULT_MAX_PIXELS = 100_000_000
MIN_SIDE = 16

# The input formats accepted (Pillow format name -> the usual extension), by the CLI,
# the library's path loader and the studio alike. Only these decoders ever see a file:
# Pillow knows many more (EPS hands the file to Ghostscript), whatever its name says.
INPUT_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
# How the accepted formats are named in messages.
INPUT_FORMATS_TEXT = "PNG, JPEG, WebP, GIF, BMP, TIFF"

# Output extension -> Pillow format name.
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

# Bits per channel a picture can be written at, and the formats that hold 16.
BIT_DEPTHS = (8, 16)
DEEP_FORMATS = ("PNG", "TIFF")

# Key of the PNG text chunk that holds the settings.
METADATA_KEY = "brushwork"

# Modes that carry an alpha channel.
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

# Serialises our temporary changes to Pillow's global bomb limit.
_PILLOW_LIMIT_LOCK = threading.Lock()


class BrushworkWarning(UserWarning):
    """Something about an input was odd but usable (e.g. an animated image)."""


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_image(
    source: str | os.PathLike | Image.Image | np.ndarray,
    *,
    role: str = "content",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Load ``source`` (path, PIL image or numpy array) as a fully loaded 8-bit RGB image.

    ``role`` ("content", "style", ...) names the image in error messages.
    Images larger than ``max_pixels`` or smaller than ``MIN_SIDE`` on a side
    are refused.
    """
    if isinstance(source, Image.Image):
        return _load_pil(source, f"{role} image '<image>'", max_pixels)
    if isinstance(source, np.ndarray):
        return _load_array(source, f"{role} image '<array>'", max_pixels)
    if isinstance(source, (str, bytes, os.PathLike)):
        return _load_path(source, role, max_pixels)
    raise TypeError(
        f"{role} image must be a path, PIL image or numpy array, "
        f"not {type(source).__name__}"
    )


def _load_path(source: str | bytes | os.PathLike, role: str, max_pixels: int) -> Image.Image:
    """Open, check and decode an image file."""
    name = f"{role} image {_quote(os.fsdecode(source))}"
    with _open_file(source, name) as f:
        return _decode(f, name, max_pixels)


@contextlib.contextmanager
def _open_file(source: str | bytes | os.PathLike, name: str) -> Iterator[Any]:
    """The file at ``source`` open for reading, after checking it is a non-empty file."""
    path = os.fsdecode(source)
    _check_input_file(path, name)
    try:
        f = open(path, "rb")
    except PermissionError:
        raise ImageError(f"{name} cannot be read (permission denied)") from None
    except OSError as e:
        raise ImageError(f"{name} cannot be read ({_reason(e)})") from None
    with f:
        yield f


@contextlib.contextmanager
def open_image(source: str | bytes | os.PathLike, *, role: str, max_pixels: int = DEFAULT_MAX_PIXELS
               ) -> Iterator[tuple[Image.Image, str]]:
    """The image file ``source`` opened but not decoded, and its name for messages, for a
    caller that decodes it its own way (brushwork.io.masks shrinks a mask as it decodes
    it).  The same checks as :func:`load_image` come first: the accepted formats only, and
    the size on the file's header against ``max_pixels``.  Decode it inside
    :func:`decoding`; the file is closed on leaving."""
    name = f"{role} image {_quote(os.fsdecode(source))}"
    with _open_file(source, name) as f:
        im = _open(f, name)
        _check_size(im.size, name, max_pixels)
        yield im, name


@contextlib.contextmanager
def decoding(name: str, max_pixels: int) -> Iterator[None]:
    """Decoding an image opened by :func:`open_image`: Pillow's own bomb check set to
    ``max_pixels``, and every failure a one-line ImageError naming ``name``."""
    with pillow_limit(max_pixels):
        try:
            yield
        except BrushworkError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(name, max_pixels) from None
        except Exception as e:  # truncated data, bad chunks, odd modes ...
            raise ImageError(f"{name} is truncated or corrupt ({_reason(e)})") from None


def load_image_bytes(data: bytes, *, name: str, role: str = "content",
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file's bytes exactly as :func:`load_image` decodes the file (an
    image shipped to another machine, say); ``name``: the file they came from, for
    messages."""
    label = f"{role} image {_quote(name)}"
    if not data:
        raise ImageError(f"{label} is empty (0 bytes)")
    return _decode(io.BytesIO(data), label, max_pixels)


def _decode(f: Any, name: str, max_pixels: int) -> Image.Image:
    """Check and decode an open image file (accepted formats only) to 8-bit RGB."""
    # Image.open only reads the header, so sizes are checked before decoding.
    im = _open(f, name)
    _check_size(im.size, name, max_pixels)

    # Decode everything now, with Pillow's own bomb check set to our limit.
    with decoding(name, max_pixels):
        frames = first_frame(im)
        rgb = _to_srgb(ImageOps.exif_transpose(im), name)

    if frames > 1:
        message = f"{name} has {frames} frames; using the first"
        warnings.warn(message, BrushworkWarning, stacklevel=4)
    return rgb


def _open(f: Any, name: str) -> Image.Image:
    """The image in the open file ``f``, its header read (accepted formats only)."""
    with pillow_limit(None):
        try:
            return Image.open(f, formats=list(INPUT_FORMATS))
        except UnidentifiedImageError:
            raise unaccepted_format(f, name) from None
        except Exception as e:  # Pillow raises many types on malformed headers
            raise ImageError(f"{name} is corrupt ({_reason(e)})") from None


def first_frame(im: Image.Image) -> int:
    """Go to the first frame of ``im``; its number of frames."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        im.seek(0)
    return frames


def unaccepted_format(f: Any, name: str) -> ImageError:
    """The error for a file none of the accepted decoders recognised.

    The file's real format is named when another Pillow plugin's signature check
    (a comparison of the first bytes, never its decoder) recognises it.
    """
    f.seek(0)
    prefix = f.read(16)
    Image.init()
    for fmt, (_factory, accept) in Image.OPEN.items():
        if fmt in INPUT_FORMATS or accept is None:
            continue
        with contextlib.suppress(Exception):
            if accept(prefix) is True:
                return ImageError(
                    f"{name} is in {fmt} format, which is not accepted "
                    f"(accepted: {INPUT_FORMATS_TEXT})"
                )
    return ImageError(
        f"{name} is not an image file (cannot identify image format; "
        f"accepted: {INPUT_FORMATS_TEXT})"
    )


def _check_input_file(path: str, name: str) -> None:
    """Raise a clear ImageError if ``path`` is not a non-empty regular file."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError(f"{name} does not exist") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read (permission denied)") from None
    except (OSError, ValueError) as e:  # ValueError: NUL byte in the path
        raise ImageError(f"{name} cannot be read ({_reason(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name} is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{name} is not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{name} is empty (0 bytes)")


def _load_pil(im: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """Check and convert an image that the caller already opened (current frame)."""
    _check_size(im.size, name, max_pixels)
    with pillow_limit(max_pixels):
        try:
            return _to_srgb(ImageOps.exif_transpose(im), name)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(name, max_pixels) from None
        except Exception as e:  # a lazily opened image may still fail to decode
            raise ImageError(f"{name} cannot be decoded ({_reason(e)})") from None


def _load_array(a: np.ndarray, name: str, max_pixels: int) -> Image.Image:
    """Turn an (H,W), (H,W,3) or (H,W,4) uint8 / [0,1] float array into RGB."""
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(f"{name} has shape {a.shape}; expected (H,W), (H,W,3) or (H,W,4)")
    _check_size((a.shape[1], a.shape[0]), name, max_pixels)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError(f"{name} contains NaN or inf")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise ImageError(f"{name} has float values in [{lo:g}, {hi:g}]; expected [0, 1]")
        a = np.rint(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"{name} has dtype {a.dtype}; expected uint8 or float in [0, 1]")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(a)))


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """Refuse images over ``max_pixels`` or under ``MIN_SIDE`` on a side."""
    w, h = size
    if w * h > max_pixels:
        raise ImageError(
            f"{name} is {w}x{h} = {w * h / 1e6:.3g} megapixels, "
            f"over the limit of {max_pixels / 1e6:.3g} (max_pixels)"
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(
            f"{name} is {w}x{h} pixels; at least {MIN_SIDE} pixels are needed on each side"
        )


def _too_large(name: str, max_pixels: int) -> ImageError:
    """Error for a bomb that Pillow caught while decoding (e.g. a huge GIF frame)."""
    return ImageError(
        f"{name} decodes to more than the limit of {max_pixels / 1e6:.3g} megapixels (max_pixels)"
    )


@contextlib.contextmanager
def pillow_limit(limit: int | None) -> Iterator[None]:
    """Temporarily set Pillow's bomb limit (None = off) and make its warning an error.

    The global is restored on exit; the lock keeps our own threads from
    interleaving their changes.
    """
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_srgb(im: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode to 8-bit sRGB: :func:`_to_rgb`, with the colour profile the
    picture embeds applied (brushwork.io.profiles), straight from CMYK or grey where the
    profile is of those."""
    profile = profiles.read_profile(im.info.get("icc_profile"), name)
    if profile is not None and profile.mode != "RGB":
        if im.mode == profile.mode:
            return profiles.convert(im, profile, name)
        profiles.warn(f"{name} has a {profile.mode} colour profile ({profile.description!r}) "
                      f"for {im.mode} pixels; read as sRGB")
        return _to_rgb(im)
    rgb = _to_rgb(im)
    return rgb if profile is None else profiles.convert(rgb, profile, name)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency goes over white."""
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        # 16/32-bit integer greyscale: scale 0..65535 to 0..255.
        a = np.clip(np.asarray(im, dtype=np.float64), 0, 65535)
        return _grey_to_rgb(a * (255.0 / 65535.0))
    if mode == "F":
        # Float greyscale: 0..1 if it fits, else 0..255.
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return _grey_to_rgb(np.clip(a * scale, 0, 255))
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # Covers 1, L, P, RGB (incl. 16-bit PNGs, which Pillow reduces to 8 bits), CMYK, YCbCr.
    return im.convert("RGB")


def _grey_to_rgb(a: np.ndarray) -> Image.Image:
    """Round a float array already in 0..255 to an RGB image."""
    return Image.fromarray(np.rint(a).astype(np.uint8)).convert("RGB")


def _quote(path: str) -> str:
    """Quote a path for a one-line message, escaping control characters."""
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in path) + "'"


def _reason(e: BaseException) -> str:
    """One-line description of an exception."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def check_output_path(
    path: str | os.PathLike, *, force: bool = False, metadata: bool = False,
    role: str = "output", bit_depth: int = 8,
) -> Path:
    """Check that an image can be written to ``path``; return where it will be written.

    Call this before a long run so a bad path fails at once. A symbolic link is
    written through, as ``cp`` does: its target is replaced and the link stays; the
    target must exist (a dangling link is refused) and its extension must name the
    same format. ``metadata``: a settings sidecar ``<target>.json`` will be written
    too (formats other than PNG), so it is checked as well. ``bit_depth`` 16 needs a
    format that holds it (PNG, TIFF).
    """
    given = Path(os.fsdecode(path)).expanduser()
    name = f"{role} {_quote(os.fsdecode(path))}"
    ext = given.suffix.lower()
    if ext not in OUTPUT_FORMATS and not given.is_dir():
        what = f"extension '{given.suffix}'" if given.suffix else "no extension"
        raise OutputError(f"{name} has {what}; use one of {', '.join(OUTPUT_FORMATS)}")
    out = _output_target(given, name)
    if out.is_dir():
        raise OutputError(f"{name} is a directory")
    fmt = OUTPUT_FORMATS[ext]
    if OUTPUT_FORMATS.get(out.suffix.lower()) != fmt:  # only a link can differ
        raise OutputError(
            f"{name} is a link to {_quote(str(out))}, whose extension does not name the "
            f"{fmt} format it would be written in"
        )
    check_bit_depth(bit_depth, fmt, name)
    Image.init()  # register all plugins so Image.SAVE is complete
    if fmt not in Image.SAVE:
        raise OutputError(f"{name}: this Pillow cannot write {fmt} files")
    if out.exists() and not force:
        raise OutputError(f"{name} exists; pass --force to overwrite")
    _check_dir_writable(out.parent, name)
    if metadata and fmt != "PNG":
        check_side_file(sidecar_path(out), "metadata file", force=force)
    return out


def check_bit_depth(bit_depth: int, fmt: str, name: str) -> None:
    """Raise OutputError unless ``fmt`` can hold ``bit_depth`` bits per channel."""
    if bit_depth not in BIT_DEPTHS:
        raise OutputError(f"{name}: bit depth must be one of "
                          f"{', '.join(map(str, BIT_DEPTHS))}, not {bit_depth!r}")
    if bit_depth == 16 and fmt not in DEEP_FORMATS:
        raise OutputError(f"{name}: 16 bits per channel needs a .png or .tif output, "
                          f"not {fmt}")


def sidecar_path(image: Path) -> Path:
    """Where the settings of a non-PNG picture go: ``<image>.json`` beside it."""
    return image.with_name(image.name + ".json")


def check_side_file(path: str | os.PathLike, role: str, *, force: bool = False) -> Path:
    """Check that a file other than a picture (a sidecar, an index, a checkpoint) can be
    written to ``path``, by the same rules as a picture; return where it will be written."""
    given = Path(os.fsdecode(path)).expanduser()
    name = f"{role} {_quote(os.fsdecode(path))}"
    out = _output_target(given, name)
    if out.is_dir():
        raise OutputError(f"{name} is a directory")
    if out.exists() and not force:
        raise OutputError(f"{name} exists; pass --force to overwrite")
    _check_dir_writable(out.parent, name)
    return out


def _output_target(given: Path, name: str) -> Path:
    """The absolute path a write to ``given`` lands on: links followed, a dangling or
    looping link refused."""
    try:
        out = given.resolve(strict=False)
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop, before Python 3.13
        raise OutputError(f"{name} is a link that cannot be followed ({_reason(e)})") from None
    if given.is_symlink() and not out.exists():
        raise OutputError(
            f"{name} is a link to {_quote(os.readlink(given))}, which does not exist; "
            "remove the link or point it at a file"
        )
    return out


def _check_dir_writable(parent: Path, name: str) -> None:
    """Raise OutputError unless files can be created in ``parent``."""
    where = f"directory {_quote(str(parent))}"
    if not parent.exists():
        raise OutputError(f"{name}: {where} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{name}: {_quote(str(parent))} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{name}: {where} is not writable")
    # os.access can lie (root, ACLs, read-only mounts): really try.
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".brushwork-probe-"):
            pass
    except OSError as e:
        raise OutputError(f"{name}: {where} is not writable ({_reason(e)})") from None


def save_image(
    image: Image.Image | torch.Tensor,
    path: str | os.PathLike,
    *,
    force: bool = False,
    metadata: dict | None = None,
    bit_depth: int = 8,
    dpi: float | None = None,
) -> Path:
    """Write ``image`` to ``path`` atomically and return the resolved path.

    ``metadata`` (JSON-serialisable) goes into a "brushwork" PNG text chunk,
    or for other formats into a sidecar ``<path>.json``.  Every format that can carries
    the sRGB profile (all but BMP); ``dpi`` records the resolution, so the picture
    prints at its width / dpi inches.  ``bit_depth`` 16 (PNG, TIFF) writes a tensor's
    float values at 16 bits per channel (brushwork.io.deep); an 8-bit image is widened.
    """
    out = check_output_path(path, force=force, metadata=metadata is not None,
                            bit_depth=bit_depth)
    fmt = OUTPUT_FORMATS[Path(os.fsdecode(path)).suffix.lower()]
    name = f"output {_quote(os.fsdecode(path))}"
    if dpi is not None and not (isinstance(dpi, (int, float)) and 0 < dpi < float("inf")):
        raise OutputError(f"{name}: dpi must be a positive number, not {dpi!r}")
    write = _writer(image, fmt, bit_depth, dpi)

    text = None
    if metadata is not None:
        try:
            text = json.dumps(metadata, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise OutputError(f"{name}: metadata is not JSON-serialisable ({_reason(e)})") from None

    sidecar = None
    if text is not None and fmt != "PNG":
        # Checked by check_output_path above, before anything is written.
        sidecar = check_side_file(sidecar_path(out), "metadata file", force=True)
        sidecar_name = f"metadata file {_quote(str(sidecar))}"

    atomic_write(out, name, force, lambda f: write(f, text if fmt == "PNG" else None))
    if sidecar is not None and text is not None:
        payload = text.encode("utf-8")
        atomic_write(sidecar, sidecar_name, force, lambda f: f.write(payload))
    return out


def _writer(image: Image.Image | torch.Tensor, fmt: str, bit_depth: int,
            dpi: float | None) -> Callable[[Any, str | None], None]:
    """A function writing ``image`` in ``fmt`` to an open file, with a PNG's text."""
    icc = None if fmt == "BMP" else profiles.srgb_icc()
    if bit_depth == 16:
        pixels = deep.to_uint16(image if isinstance(image, torch.Tensor) else to_tensor(image))

        def write_deep(f: Any, text: str | None) -> None:
            if fmt == "PNG":
                deep.write_png16(f, pixels, icc=icc, dpi=dpi,
                                 text=None if text is None else {METADATA_KEY: text})
            else:
                deep.write_tiff16(f, pixels, icc=icc, dpi=dpi)
        return write_deep

    picture = to_image(image) if isinstance(image, torch.Tensor) else image
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    options: dict[str, Any] = {"format": fmt}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = 95
    if icc is not None:
        options["icc_profile"] = icc
    if dpi is not None:
        options["dpi"] = (dpi, dpi)

    def write_8(f: Any, text: str | None) -> None:
        extra: dict[str, Any] = {}
        if text is not None:
            info = PngImagePlugin.PngInfo()
            info.add_text(METADATA_KEY, text)
            extra["pnginfo"] = info
        picture.save(f, **options, **extra)
    return write_8


def save_text(text: str, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write a text file (an index, a script) atomically, refusing to overwrite unless ``force``."""
    out = check_side_file(path, "file", force=force)
    name = f"file {_quote(os.fsdecode(path))}"
    atomic_write(out, name, force, lambda f: f.write(text.encode("utf-8")))
    return out


def check_output_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Check that a folder of outputs can be made at ``path`` (or reused, when ``force``)."""
    out = Path(os.fsdecode(path)).expanduser()
    name = f"output folder {_quote(os.fsdecode(path))}"
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{name} exists and is not a folder")
        if any(out.iterdir()) and not force:
            raise OutputError(f"{name} exists and is not empty; pass --force to overwrite")
        _check_dir_writable(out, name)
    else:
        _check_dir_writable(out.parent, name)
    return out


def atomic_write(out: Path, name: str, force: bool, write: Callable[[Any], Any]) -> None:
    """Write via a temp file in the same directory, then os.replace it into place."""
    tmp = tempfile.NamedTemporaryFile(
        delete=False, dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix
    )
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _new_file_mode(out))
        # Re-check right before replacing: the file may have appeared meanwhile.
        if not force and out.exists():
            raise OutputError(f"{name} exists; pass --force to overwrite")
        os.replace(tmp.name, out)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        if isinstance(e, (OSError, ValueError)) and not isinstance(e, OutputError):
            raise OutputError(f"{name} could not be written ({_reason(e)})") from e
        raise
    _fsync_dir(out.parent)


def _new_file_mode(out: Path) -> int:
    """Permissions for the new file: keep the old file's, else 0o666 minus umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(out).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Best effort: make the rename itself durable."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_metadata(path: str | os.PathLike) -> dict | None:
    """Return the settings saved with an image, or None if there are none."""
    p = Path(os.fsdecode(path))
    name = f"image {_quote(os.fsdecode(path))}"
    text = None
    if p.suffix.lower() == ".png":
        _check_input_file(str(p), name)
        try:
            with Image.open(p, formats=["PNG"]) as im:
                text = getattr(im, "text", {}).get(METADATA_KEY)
        except Exception as e:  # Pillow raises many types on bad files
            raise ImageError(f"{name} cannot be read ({_reason(e)})") from None
    if text is None:
        sidecar = sidecar_path(p.resolve())  # written beside a link's target
        if not sidecar.is_file():
            return None
        name = f"metadata file {_quote(str(sidecar))}"
        try:
            text = sidecar.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as e:
            raise ImageError(f"{name} cannot be read ({_reason(e)})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ImageError(f"{name} has invalid metadata JSON ({_reason(e)})") from None
    if not isinstance(data, dict):
        raise ImageError(f"{name} has metadata that is not a JSON object")
    return data


# --------------------------------------------------------------------------
# Tensors and sizes
# --------------------------------------------------------------------------


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> float32 tensor (1, 3, H, W) with values 0..255."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    a = np.array(image, dtype=np.float32)  # (H, W, 3), a writable copy
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Tensor (1,3,H,W) or (3,H,W) of 0..255 values -> RGB image (clamped, rounded)."""
    t = tensor.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        shape = tuple(tensor.shape)
        raise ValueError(f"image tensor must have shape (1,3,H,W) or (3,H,W), not {shape}")
    t = t.to("cpu", torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError("image tensor contains NaN or inf")
    a = t.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(a)


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to ``size`` (width, height): LANCZOS when shrinking, BICUBIC when growing."""
    w, h = size
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, not {size}")
    if (w, h) == image.size:
        return image.copy()
    shrinking = w * h < image.width * image.height
    return image.resize((w, h), Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC)


def scaled_size(image_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``long_side``, keeping the aspect ratio."""
    w, h = image_size
    if w < 1 or h < 1 or long_side < 1:
        raise ValueError(f"sizes must be positive, not {image_size} and {long_side}")
    m = max(w, h)
    # Exact integer round-half-up of side * long_side / m.
    return (
        max(1, (2 * w * long_side + m) // (2 * m)),
        max(1, (2 * h * long_side + m) // (2 * m)),
    )
