"""Reading the regions a run paints: one mask per style image (``style_masks``), or one
colour-coded map with a colour per style (``region_map`` and ``region_colors``).

Masks are greyscale: white = this style, black = not, grey = a soft share.  Where no
mask (or no listed colour of the map) covers the photo, the photo is kept: only the
content loss acts there.  Everything is checked here, before any long work starts, and
every problem is a one-line BrushworkError naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from brushwork.errors import BrushworkError
from brushwork.io.images import load_image

# A map's pixel takes the nearest listed colour within this RGB distance (JPEG noise
# and antialiased edges), and keeps the photo beyond it.
COLOR_TOLERANCE = 60.0
# Aspect ratios that differ by less than this share (or by rounding one side to whole
# pixels) are the same.
ASPECT_TOLERANCE = 0.01

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_color(text: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` (or ``"rrggbb"``) as an RGB triple; BrushworkError otherwise."""
    match = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BrushworkError(f"region_colors: {text!r} is not a colour like #ff0000")
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def check_aspect(size: tuple[int, int], photo: tuple[int, int], name: str) -> None:
    """Refuse a mask whose shape is not the photo's (any scale of it)."""
    w, h = size
    pw, ph = photo
    # The mask's height if it had the photo's shape at its width, and how far off it may be.
    expected_h = w * ph / pw
    if abs(h - expected_h) <= max(1.0, ASPECT_TOLERANCE * expected_h):
        return
    shapes = " or ".join(dict.fromkeys([f"{w}x{round(expected_h)}", f"{pw}x{ph}"]))
    raise BrushworkError(
        f"{name} is {w}x{h} (aspect {w / h:.3f}) but the photo is {pw}x{ph} (aspect "
        f"{pw / ph:.3f}): a mask needs the photo's shape, e.g. {shapes}")


def _grey(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


class MaskOptions(Protocol):
    """The options masks are read by (brushwork.engine.settings.Settings has them; io
    sits below the engine, so it names what it reads rather than importing Settings)."""

    @property
    def style_masks(self) -> tuple[str, ...] | None: ...
    @property
    def region_map(self) -> str | None: ...
    @property
    def region_colors(self) -> tuple[str, ...] | None: ...
    @property
    def max_pixels(self) -> int: ...


def load_masks(settings: MaskOptions, photo: Image.Image, n_styles: int
               ) -> tuple[torch.Tensor | None, list[str]]:
    """The run's regions as masks ``(R, 1, H, W)`` in 0..1 (one per style image, at the
    masks' own size), or None when the run has none; with notes worth telling the user."""
    if settings.style_masks is not None:
        return _from_masks(settings.style_masks, photo, n_styles, settings.max_pixels)
    if settings.region_map is not None:
        return _from_map(settings.region_map, settings.region_colors, photo, n_styles,
                         settings.max_pixels)
    return None, []


def _from_masks(paths: Sequence[str], photo: Image.Image, n_styles: int,
                max_pixels: int) -> tuple[torch.Tensor, list[str]]:
    if len(paths) != n_styles:
        raise BrushworkError(
            f"--style-masks has {len(paths)} mask{'s' * (len(paths) != 1)} for {n_styles} "
            f"style image{'s' * (n_styles != 1)}: give one mask per style image, in order")
    grids, notes, size = [], [], None
    for k, path in enumerate(paths, 1):
        im = load_image(path, role=f"style mask {k}", max_pixels=max_pixels)
        name = f"style mask {k} '{path}'"
        check_aspect(im.size, photo.size, name)
        if size is not None and im.size != size:
            raise BrushworkError(f"{name} is {im.size[0]}x{im.size[1]} but style mask 1 is "
                                 f"{size[0]}x{size[1]}: the masks must have one size")
        size = im.size
        grey = _grey(im)
        if float(grey.max()) < 1.0 / 255:
            raise BrushworkError(f"{name} is all black: style {k} would paint nowhere "
                                 f"(white = where a style paints)")
        if float(grey.min()) > 254.0 / 255:
            notes.append(f"{name} is all white: style {k} paints the whole picture, "
                         f"over the other regions too")
        grids.append(grey)
    return torch.from_numpy(np.stack(grids))[:, None], notes


def _from_map(path: str, colors: Sequence[str] | None, photo: Image.Image, n_styles: int,
              max_pixels: int) -> tuple[torch.Tensor, list[str]]:
    if not colors:
        raise BrushworkError("--region-map needs --region-colors, one colour per style image")
    if len(colors) != n_styles:
        raise BrushworkError(
            f"--region-colors has {len(colors)} colour{'s' * (len(colors) != 1)} for "
            f"{n_styles} style image{'s' * (n_styles != 1)}: give one per style image, in "
            f"order")
    im = load_image(path, role="region map", max_pixels=max_pixels)
    name = f"region map '{path}'"
    check_aspect(im.size, photo.size, name)
    rgb = np.asarray(im, dtype=np.float32)  # (H, W, 3)
    palette = np.array([parse_color(c) for c in colors], dtype=np.float32)  # (R, 3)
    masks = regions_of_map(rgb, palette)
    for k, color in enumerate(colors):
        if not masks[k].any():
            raise BrushworkError(f"region colour {color} (style {k + 1}) is nowhere in the "
                                 f"{name}; its main colours are {_main_colors(rgb)}")
    return torch.from_numpy(masks.astype(np.float32))[:, None], []


def regions_of_map(rgb: np.ndarray, palette: np.ndarray,
                   tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """``(R, H, W)`` booleans: each pixel of ``rgb`` ``(H, W, 3)`` in the region of its
    nearest colour of ``palette`` ``(R, 3)``, if that is within ``tolerance``."""
    dist = np.linalg.norm(rgb[None] - palette[:, None, None, :], axis=-1)  # (R, H, W)
    nearest = dist.argmin(axis=0)
    near = dist.min(axis=0) <= tolerance
    return np.stack([(nearest == k) & near for k in range(len(palette))])


def _main_colors(rgb: np.ndarray, top: int = 4) -> str:
    pixels = rgb.reshape(-1, 3).astype(np.uint8)
    values, counts = np.unique(pixels, axis=0, return_counts=True)
    order = np.argsort(-counts)[:top]
    total = counts.sum()
    return ", ".join(f"#{v[0]:02x}{v[1]:02x}{v[2]:02x} ({100 * c / total:.0f}%)"
                     for v, c in zip(values[order], counts[order], strict=True))
