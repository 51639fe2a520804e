"""Checking uploaded images before anything keeps them.

The byte limit is enforced while the request is read (see security.Guard); here the
header is read first and its size checked against the pixel limit, and only then is
the whole image decoded (with Pillow's bomb check set to the same limit).  The file is
kept under a random id; the name the browser sent is display text only.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass

from PIL import Image

from ..errors import ImageError
from ..imageio import INPUT_FORMATS, INPUT_FORMATS_TEXT, MIN_SIDE, load_image, pillow_limit

# Pillow formats accepted (the same as the CLI's), and the extension the stored file gets.
FORMATS = INPUT_FORMATS
THUMB_SIDE = 320


class UploadError(Exception):
    """A refused upload: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CheckedImage:
    format: str
    ext: str
    width: int  # as stored (before EXIF rotation)
    height: int
    rgb: Image.Image  # the decoded picture, EXIF rotation applied


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Decode ``data`` fully or raise UploadError (413 too large, 415 not an image, 422 bad)."""
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is {len(data)} bytes, over the limit of "
                               f"{max_bytes} bytes")
    if not data:
        raise UploadError(400, "the file is empty")
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
    try:
        rgb = load_image(im, role="uploaded", max_pixels=max_pixels)  # the full decode
    except ImageError as e:
        raise UploadError(422, f"the image cannot be decoded: {e}") from None
    return CheckedImage(im.format or "?", FORMATS.get(im.format or "", ".img"), w, h, rgb)


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
