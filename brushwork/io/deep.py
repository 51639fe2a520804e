"""Pictures at 16 bits per channel, for print: PNG (pypng) and TIFF (tifffile).

Pillow has no 16-bit RGB mode, so these two formats are written from a NumPy array by
the libraries that do.  The optimised picture is float, so 16 bits keep the gradations of
a smooth sky that 8 bits band at print size.  Like Pillow's 8-bit files, each carries the
sRGB profile and, when given, its resolution (PNG's pHYs chunk counts pixels per metre;
TIFF's resolution tags, pixels per inch).
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

import numpy as np
import png
import tifffile
import torch

INCH_M = 0.0254
# The name LittleCMS's own profile goes by in a PNG's iCCP chunk (any Latin-1 name).
ICC_NAME = b"sRGB"


def to_uint16(pixels: torch.Tensor) -> np.ndarray:
    """A picture ``(1, 3, H, W)`` or ``(3, H, W)`` in 0..255 (float) as ``(H, W, 3)``
    uint16 in 0..65535."""
    t = pixels.detach().to("cpu", torch.float32)
    if t.dim() == 4:
        t = t[0]
    if not torch.isfinite(t).all():
        raise ValueError("image tensor contains NaN or inf")
    scaled = (t.clamp(0, 255) * (65535.0 / 255.0)).round()
    return scaled.to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)


def write_png16(file: BinaryIO, pixels: np.ndarray, *, icc: bytes | None, dpi: float | None,
                text: dict[str, str] | None = None) -> None:
    """``pixels`` ``(H, W, 3)`` uint16 as a 16-bit PNG to ``file``, with an iCCP chunk for
    ``icc``, pHYs for ``dpi`` and a tEXt chunk per ``text`` item (Latin-1)."""
    height, width, _ = pixels.shape
    per_metre = None if dpi is None else round(dpi / INCH_M)
    writer = png.Writer(width, height, greyscale=False, bitdepth=16, compression=6,
                        x_pixels_per_unit=per_metre, y_pixels_per_unit=per_metre,
                        unit_is_meter=per_metre is not None)
    body = io.BytesIO()
    writer.write_array(body, pixels.reshape(-1))
    chunks = list(png.Reader(bytes=body.getvalue()).chunks())
    extra = []
    if icc is not None:  # name, NUL, compression method 0 (zlib), the profile compressed
        extra.append((b"iCCP", ICC_NAME + b"\0\0" + zlib.compress(icc)))
    for key, value in (text or {}).items():
        extra.append((b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
    # IHDR first; iCCP must come before the image data, tEXt may.
    png.write_chunks(file, [chunks[0], *extra, *chunks[1:]])


def write_tiff16(file: BinaryIO, pixels: np.ndarray, *, icc: bytes | None,
                 dpi: float | None) -> None:
    """``pixels`` ``(H, W, 3)`` uint16 as a 16-bit RGB TIFF to ``file`` (Deflate)."""
    tifffile.imwrite(file, pixels, photometric="rgb", compression="zlib", iccprofile=icc,
                     metadata=None, resolution=None if dpi is None else (dpi, dpi),
                     resolutionunit=None if dpi is None else "INCH")
