"""Reading masks and region maps: at most the photo's size, whatever the file's, and
transparency meaning "not this region"."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageFile

from brushwork.errors import BrushworkError
from brushwork.io.masks import load_masks

PHOTO = Image.new("RGB", (40, 32), (128, 128, 128))


@dataclass(frozen=True)
class Options:
    style_masks: tuple[str, ...] | None = None
    region_map: str | None = None
    region_colors: tuple[str, ...] | None = None
    max_pixels: int = 100_000_000


def _masks(*paths, **options):
    masks, notes = load_masks(Options(style_masks=tuple(map(str, paths)), **options), PHOTO,
                              len(paths))
    return masks.numpy()[:, 0], notes


def _map(path, *colors, **options):
    masks, _ = load_masks(Options(region_map=str(path), region_colors=colors, **options),
                          PHOTO, len(colors))
    return masks.numpy()[:, 0]


def _halves(w: int, h: int, left, right, channels: int | None = None) -> np.ndarray:
    a = np.empty((h, w) if channels is None else (h, w, channels), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2:] = right
    return a


def _peak(load, warm_up):
    """What ``load()`` returns, and the most memory numpy (and Python) held while it ran,
    beyond what they held before: tracemalloc sees numpy's arrays, not Pillow's own
    buffers.  ``warm_up()`` first, so that imports and first-use caches do not count."""
    warm_up()
    tracemalloc.start()
    try:
        out = load()
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak - now


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The size of each image file as Pillow decodes it."""
    seen: list[tuple[str, tuple[int, int]]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # not decoded yet
            seen.append((self.format, self.size))
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


# -- at most the photo's size --------------------------------------------------------------


def test_a_big_mask_is_shrunk_to_the_photo_before_it_becomes_an_array(tmp_path):
    """A 1600x1280 mask (2 Mpx) for a 40x32 photo: no array of the mask's size is ever
    made (numpy's allocations are what tracemalloc sees), and the mask comes back at the
    photo's size, each pixel the share of its block that is white."""
    path, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(_halves(1600, 1280, 255, 0)).save(path)
    Image.fromarray(_halves(40, 32, 255, 0)).save(small)
    (masks, _), peak = _peak(lambda: _masks(path), lambda: _masks(small))
    assert masks.shape == (1, 32, 40)
    assert np.array_equal(masks[0], _halves(40, 32, 1.0, 0.0).astype(np.float32))
    assert peak < 200_000  # the mask as float32 would be 8.2 MB (measured: 75 kB)


def test_a_big_region_map_is_shrunk_with_its_colours_exact(tmp_path):
    rgb = _halves(1600, 1280, (255, 0, 0), (0, 0, 255), channels=3)
    rgb[::7, ::5] = (0, 255, 0)  # a sprinkle of another colour, no region
    path, small = tmp_path / "map.png", tmp_path / "small.png"
    Image.fromarray(rgb).save(path)
    Image.fromarray(rgb[:32, :40]).save(small)
    masks, peak = _peak(lambda: _map(path, "#ff0000", "#0000ff"),
                        lambda: _map(small, "#ff0000"))
    assert masks.shape == (2, 32, 40)
    # Nearest neighbour: every pixel is red, blue or green, never a blend of them.
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert masks[0, :, :20].mean() > 0.8 and masks[1, :, 20:].mean() > 0.8
    assert not masks[0, :, 20:].any() and not masks[1, :, :20].any()
    assert peak < 200_000  # the map as float32 RGB would be 24.6 MB


def test_a_missing_colour_in_a_big_map_is_reported_fast(tmp_path):
    path = tmp_path / "map.png"
    Image.fromarray(_halves(1500, 1200, (255, 0, 0), (0, 0, 255), channels=3)).save(path)
    began = time.perf_counter()
    with pytest.raises(BrushworkError, match=r"region colour #00ff00 \(style 2\) is nowhere "
                       r"in the region map .*; its main colours are #0000ff \(50%\), "
                       r"#ff0000 \(50%\)"):
        _map(path, "#ff0000", "#00ff00")
    assert time.perf_counter() - began < 5.0  # was 25 s, and 5 minutes at 39 Mpx


def test_a_big_jpeg_mask_is_decoded_at_a_reduced_scale(tmp_path, decoded_sizes):
    path = tmp_path / "big.jpg"
    Image.fromarray(_halves(1024, 820, 255, 0)).save(path, quality=95)
    masks, _ = _masks(path)
    # JPEG's draft mode decodes at 1/8 of the size, still at least the photo's.
    assert decoded_sizes == [("JPEG", (128, 103))]
    assert masks.shape == (1, 32, 40)
    assert masks[0, :, :19].min() > 0.9 and masks[0, :, 21:].max() < 0.1


def test_a_small_mask_keeps_its_own_size(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(_halves(20, 16, 255, 0)).save(path)
    masks, _ = _masks(path)
    assert masks.shape == (1, 16, 20)
    assert np.array_equal(masks[0], _halves(20, 16, 1.0, 0.0).astype(np.float32))


def test_a_rotated_mask_is_turned_before_it_is_compared(tmp_path):
    """EXIF orientation 6 (turn 90 degrees clockwise): stored 820x1024, shown 1024x820."""
    shown = _halves(1024, 820, 255, 0)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    masks, _ = _masks(path)
    assert masks.shape == (1, 32, 40)
    assert masks[0, :, :19].min() > 0.9 and masks[0, :, 21:].max() < 0.1


def test_the_pixel_limit_applies_to_the_mask_files_header(tmp_path, decoded_sizes):
    path = tmp_path / "big.png"
    Image.fromarray(_halves(400, 320, 255, 0)).save(path)
    with pytest.raises(BrushworkError, match=r"style mask 1 image '.*big\.png' is 400x320 = "
                       r"0\.128 megapixels, over the limit of 0\.1 \(max_pixels\)"):
        _masks(path, max_pixels=100_000)
    with pytest.raises(BrushworkError, match=r"region map image '.*big\.png' is 400x320"):
        _map(path, "#ffffff", max_pixels=100_000)
    assert decoded_sizes == []  # refused on the header


def test_masks_of_other_sizes_and_shapes_are_still_refused(tmp_path):
    a, b, square = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "square.png"
    Image.fromarray(_halves(400, 320, 255, 0)).save(a)
    Image.fromarray(_halves(800, 640, 0, 255)).save(b)
    Image.fromarray(np.zeros((400, 400), np.uint8)).save(square)
    with pytest.raises(BrushworkError, match=r"style mask 2 '.*b\.png' is 800x640 but style "
                       r"mask 1 is 400x320: the masks must have one size"):
        _masks(a, b)
    with pytest.raises(BrushworkError, match=r"style mask 1 '.*square\.png' is 400x400 .* "
                       r"e\.g\. 400x320 or 40x32"):
        _masks(square)


# -- transparency --------------------------------------------------------------------------


def _transparent_left(mode: str) -> Image.Image:
    """White everywhere, the left half fully transparent, in ``mode``."""
    if mode == "RGBA":
        return Image.fromarray(np.dstack([np.full((32, 40, 3), 255, np.uint8),
                                          _halves(40, 32, 0, 255)]))
    if mode == "LA":
        return Image.fromarray(np.dstack([np.full((32, 40), 255, np.uint8),
                                          _halves(40, 32, 0, 255)]), "LA")
    if mode == "P":  # two palette entries, the first transparent
        im = Image.fromarray(_halves(40, 32, 0, 1), "P")
        im.putpalette([255, 255, 255, 255, 255, 255])
        im.info["transparency"] = 0
        return im
    if mode == "L":  # a tRNS chunk: grey 254 is transparent
        im = Image.fromarray(_halves(40, 32, 254, 255))
        im.info["transparency"] = 254
        return im
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L"])
@pytest.mark.parametrize("size", [(40, 32), (400, 320)], ids=["photo-size", "shrunk"])
def test_transparent_mask_pixels_are_not_the_region(tmp_path, mode, size):
    path = tmp_path / "mask.png"
    im = _transparent_left(mode)
    im.resize(size, Image.Resampling.NEAREST).save(path, **(
        {"transparency": im.info["transparency"]} if "transparency" in im.info else {}))
    masks, _ = _masks(path)
    assert np.array_equal(masks[0], _halves(40, 32, 0.0, 1.0).astype(np.float32))


def test_a_half_transparent_white_mask_is_half_the_region(tmp_path):
    path = tmp_path / "mask.png"
    Image.new("RGBA", (40, 32), (255, 255, 255, 51)).save(path)
    masks, _ = _masks(path)
    assert np.allclose(masks, 0.2)


def test_an_all_transparent_mask_is_refused_as_all_black(tmp_path):
    path = tmp_path / "mask.png"
    Image.new("RGBA", (40, 32), (255, 255, 255, 0)).save(path)
    with pytest.raises(BrushworkError, match="is all black: style 1 would paint nowhere"):
        _masks(path)


def test_transparent_pixels_of_a_region_map_are_in_no_region(tmp_path):
    """At least half opaque: the pixel's colour counts, as it is; less: no region (the
    photo is kept there), whatever its colour."""
    rgba = np.zeros((32, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere
    rgba[:, :10, 3] = 0
    rgba[:, 10:20, 3] = 127
    rgba[:, 20:30, 3] = 128
    rgba[:, 30:, 3] = 255
    path = tmp_path / "map.png"
    Image.fromarray(rgba).save(path)
    masks = _map(path, "#ff0000")
    expected = np.zeros((32, 40), np.float32)
    expected[:, 20:] = 1
    assert np.array_equal(masks[0], expected)


def test_a_colour_only_under_transparent_pixels_is_nowhere(tmp_path):
    rgba = np.zeros((32, 40, 4), np.uint8)
    rgba[:, :, 2] = 255
    rgba[:, :, 3] = 255
    rgba[:, :8] = (255, 0, 0, 0)
    path = tmp_path / "map.png"
    Image.fromarray(rgba).save(path)
    with pytest.raises(BrushworkError, match=r"region colour #ff0000 \(style 1\) is nowhere "
                       r"in the region map .*; its main colours are #0000ff \(80%\), "
                       r"transparent \(20%\)"):
        _map(path, "#ff0000", "#0000ff")
