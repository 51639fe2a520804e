"""Checking an uploaded image and turning it into the file the studio keeps.

:func:`reencode` reads the header first and checks its size against the pixel limit,
only then decodes the whole image (Pillow's bomb check set to the same limit), and
returns the picture re-encoded: the studio never keeps the bytes as sent, so trailing
data, metadata and odd encodings (a progressive JPEG of thousands of scans) are not
stored and the painter later reads only a plain file of the studio's own making.  It
runs in a separate, bounded process (decoder.py), never in the server's.  The file is
kept under a random id; the name the browser sent is display text only.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass

from PIL import Image

from brushwork.errors import ImageError
from brushwork.io.images import (
    INPUT_FORMATS,
    INPUT_FORMATS_TEXT,
    MIN_SIDE,
    load_image,
    pillow_limit,
)

# Pillow formats accepted (the same as the CLI's).
FORMATS = INPUT_FORMATS
THUMB_SIDE = 320
# A JPEG is kept as a JPEG at this quality: close to the original, at a size close to
# the original's.  Every other format is kept as a PNG
# (lossless); the picture is the 8-bit RGB the painter uses either way.
JPEG_QUALITY = 95
PNG_LEVEL = 3  # zlib level: most of level 6's size at a fraction of its time


class UploadError(Exception):
    """A refused upload: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reencoded:
    """What the studio stores for an upload."""

    format: str  # as sent: PNG, JPEG, ...
    ext: str  # of the stored file: ".png" or ".jpg"
    width: int  # of the stored picture (EXIF rotation applied)
    height: int
    data: bytes  # the stored file
    thumb: bytes  # a small JPEG of it
    # The darkest and lightest grey (0..255) of the picture: whether a mask is all black
    # is known at submit without decoding it again in the server.
    grey: tuple[int, int]


def check_bytes(data: bytes, *, max_bytes: int) -> None:
    """Refuse an empty upload or one over ``max_bytes`` (before anything decodes it)."""
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is {len(data)} bytes, over the limit of "
                               f"{max_bytes} bytes")
    if not data:
        raise UploadError(400, "the file is empty")


def reencode(data: bytes, *, max_pixels: int) -> Reencoded:
    """Decode ``data`` fully and re-encode it, or raise UploadError (413 too large, 415 not
    an image, 422 bad).  Takes Pillow's process-wide limit: call it in a process of its
    own (decoder.Decoder)."""
    try:
        with pillow_limit(None):  # header only: sizes are checked below, before decoding
            im = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.UnidentifiedImageError:
        raise UploadError(415, f"not an image (accepted: {INPUT_FORMATS_TEXT})") from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise UploadError(415, f"not a readable image ({_first_line(e)})") from None
    w, h = im.size
    if w * h > max_pixels:
        raise UploadError(413, f"the image is {w}x{h} = {w * h / 1e6:.3g} megapixels, over "
                               f"the limit of {max_pixels / 1e6:.3g}")
    if min(w, h) < MIN_SIDE:
        raise UploadError(422, f"the image is {w}x{h}; at least {MIN_SIDE} pixels are needed "
                               "on each side")
    fmt = im.format or "?"
    try:
        rgb = load_image(im, role="uploaded", max_pixels=max_pixels)  # the full decode
    except ImageError as e:
        if isinstance(e.__context__, MemoryError):  # load_image names it; the caller
            raise MemoryError from None             # (decoder.py) answers it as such
        raise UploadError(422, f"the image cannot be decoded: {e}") from None
    del im
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb.save(buf, format="JPEG", quality=JPEG_QUALITY)
        ext = ".jpg"
    else:
        rgb.save(buf, format="PNG", compress_level=PNG_LEVEL)
        ext = ".png"
    width, height = rgb.size
    darkest, lightest = rgb.convert("L").getextrema()  # one band: two ints
    rgb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)  # in place: no copy
    thumb = io.BytesIO()
    rgb.save(thumb, format="JPEG", quality=85)
    return Reencoded(fmt, ext, width, height, buf.getvalue(), thumb.getvalue(),
                     (int(darkest), int(lightest)))  # type: ignore[arg-type]


def thumbnail_jpeg(image: Image.Image, side: int = THUMB_SIDE, quality: int = 85) -> bytes:
    """A small JPEG of ``image``, its long side at most ``side``."""
    im = image.convert("RGB")
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def display_name(name: str | None, limit: int = 80) -> str:
    """The browser's file name as harmless display text (never used as a path)."""
    if not name:
        return "image"
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return (name[:limit] or "image")


def _first_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())[:200]
