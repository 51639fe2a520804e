"""Reading the regions a run paints: one mask per style image (``style_masks``), or one
colour-coded map with a colour per style (``region_map`` and ``region_colors``).

Masks are greyscale: white = this style, black = not, grey = a soft share; a
transparent pixel is "not this style" (the mask is laid over black), a half transparent
white one a half share.  A region map's pixel at least half opaque is in the region of
its colour; one more than half transparent is in no region.  Where no mask (or no listed
colour of the map) covers the photo, the photo is kept: only the content loss acts
there.  Everything is checked here, before any long work starts, and every problem is a
one-line BrushworkError naming the file.

A mask or map larger than the photo is shrunk to the photo's size as it is decoded
(JPEG's draft mode, then Pillow's resize on the decoded image, before any array is made),
so that the memory and time it takes follow the photo, not the file: a mask by the
share of each block that is white (box filter), a map by nearest neighbour, so that
its colours stay exact.  The picture limits (``max_pixels``) apply to the file's header.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from brushwork.errors import BrushworkError
from brushwork.io.images import BrushworkWarning, decoding, first_frame, open_image

# A map's pixel takes the nearest listed colour within this RGB distance (JPEG noise
# and antialiased edges), and keeps the photo beyond it.
COLOR_TOLERANCE = 60.0
# A region map's pixel with less alpha than this is in no region.
OPAQUE = 128
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


# Image modes with an alpha band (a palette or tRNS chunk may add one: "transparency").
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# How the picture stored with each EXIF orientation is turned to be shown (as
# PIL.ImageOps.exif_transpose does); 5 to 8 swap width and height.
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_TURNED = {5, 6, 7, 8}


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in _ALPHA_MODES or "transparency" in im.info


Size = tuple[int, int]


def _read(path: str, role: str, photo: Size, max_pixels: int,
          check: Callable[[Size, str], None], shrink: Callable[[Image.Image, Size], Image.Image]
          ) -> tuple[Image.Image, Size, str]:
    """The image file at ``path``: its size as shown (EXIF orientation applied) is passed
    to ``check`` with its name first; then it is decoded at most at the ``photo``'s size,
    ``shrink(im, size)`` giving it ``size`` (in the file's orientation).  Returns the
    image as shown, its size as shown in the file and its name."""
    name = f"{role} '{path}'"
    with open_image(path, role=role, max_pixels=max_pixels) as (im, image_name), \
            decoding(image_name, max_pixels):
        orientation = im.getexif().get(0x0112, 1)
        turned = orientation in _TURNED
        size = im.size[::-1] if turned else im.size
        check(size, name)
        frames = first_frame(im)
        target = photo if size[0] > photo[0] or size[1] > photo[1] else size
        stored = target[::-1] if turned else target
        if im.format == "JPEG" and stored != im.size:
            # Decoded at 1/2, 1/4 or 1/8 of the size, still at least ``stored``.
            im.draft(im.mode, stored)
        shown = shrink(im, stored)
        if orientation in _ORIENTATIONS:
            shown = shown.transpose(_ORIENTATIONS[orientation])
    if frames > 1:
        warnings.warn(f"{image_name} has {frames} frames; using the first", BrushworkWarning,
                      stacklevel=4)
    return shown, size, name


def _shrink_grey(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` as "F" (0..1, laid over black where transparent) at ``size``: converted to
    a band or two of 8 bits at its own size, which is then averaged over boxes."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # 16 or 32 bits of grey
        f = im.convert("F")
        f = f if f.size == size else f.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
        a = np.nan_to_num(np.asarray(f, dtype=np.float32))
        top = 1.0 if im.mode == "F" and a.size and a.max() <= 1.0 else \
            255.0 if im.mode == "F" else 65535.0
        return Image.fromarray(np.clip(a / top, 0, 1))
    if _has_alpha(im):
        # Premultiplied: the grey is multiplied by the alpha, and averaged so.
        la = im.convert("LA").convert("La")
        la = la if la.size == size else la.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
        grey = la.getchannel(0)
    else:
        grey = im if im.mode == "L" else im.convert("L")
        if grey.size != size:
            grey = grey.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return Image.fromarray(np.asarray(grey, dtype=np.float32) / 255.0)


def _shrink_colours(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` as RGBA at ``size``, picked by nearest neighbour (exact colours)."""
    if im.size != size:
        im = im.resize(size, Image.Resampling.NEAREST)
    return im.convert("RGBA")


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
    masks' own size, or the photo's where they are larger), or None when the run has
    none; with notes worth telling the user."""
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
    grids: list[np.ndarray] = []
    notes: list[str] = []
    first: tuple[int, int] | None = None

    def check(size: tuple[int, int], name: str) -> None:
        check_aspect(size, photo.size, name)
        if first is not None and size != first:
            raise BrushworkError(f"{name} is {size[0]}x{size[1]} but style mask 1 is "
                                 f"{first[0]}x{first[1]}: the masks must have one size")

    for k, path in enumerate(paths, 1):
        im, size, name = _read(path, f"style mask {k}", photo.size, max_pixels, check,
                               _shrink_grey)
        first = first or size
        grey = np.asarray(im, dtype=np.float32)
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
    palette = np.array([parse_color(c) for c in colors], dtype=np.float32)  # (R, 3)
    im, _, name = _read(path, "region map", photo.size, max_pixels,
                        lambda size, name: check_aspect(size, photo.size, name),
                        _shrink_colours)
    rgba = np.asarray(im)  # (H, W, 4) uint8
    opaque = rgba[..., 3] >= OPAQUE
    masks = regions_of_map(rgba[..., :3], palette) & opaque
    for k, color in enumerate(colors):
        if not masks[k].any():
            raise BrushworkError(f"region colour {color} (style {k + 1}) is nowhere in the "
                                 f"{name}; its main colours are {_main_colors(rgba)}")
    return torch.from_numpy(masks.astype(np.float32))[:, None], []


def regions_of_map(rgb: np.ndarray, palette: np.ndarray,
                   tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """``(R, H, W)`` booleans: each pixel of ``rgb`` ``(H, W, 3)`` in the region of its
    nearest colour of ``palette`` ``(R, 3)``, if that is within ``tolerance``."""
    best = np.full(rgb.shape[:2], np.inf, np.float32)  # the nearest colour's distance²
    nearest = np.zeros(rgb.shape[:2], np.intp)
    for k, color in enumerate(np.asarray(palette, np.float32)):
        dist = np.zeros(rgb.shape[:2], np.float32)
        for c in range(3):
            dist += np.square(rgb[..., c].astype(np.float32) - color[c])
        closer = dist < best
        nearest[closer] = k
        np.minimum(best, dist, out=best)
    near = best <= np.float32(tolerance) ** 2
    return np.stack([(nearest == k) & near for k in range(len(palette))])


def _main_colors(rgba: np.ndarray, top: int = 4) -> str:
    """The most common colours of ``rgba`` ``(H, W, 4)`` uint8, and the share of its
    pixels that are transparent (less than half opaque), with their shares."""
    opaque = rgba[..., 3] >= OPAQUE
    rgb = rgba[..., :3][opaque].astype(np.uint32)  # (N, 3)
    packed = rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    total = opaque.size
    named = [(f"#{int(v):06x}", int(c)) for v, c in zip(values, counts, strict=True)]
    named.append(("transparent", total - len(packed)))
    named.sort(key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{text} ({100 * c / total:.0f}%)" for text, c in named[:top] if c)
