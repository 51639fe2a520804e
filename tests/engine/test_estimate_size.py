"""estimate_size: the plan of a photo known only by its size, with no image read."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFile

from brushwork.engine.painter import estimate, estimate_size


def test_the_plan_from_the_size_is_the_plan_from_the_picture(use_tiny, photo_path,
                                                             painting_path, monkeypatch):
    opts = dict(size=112, multiscale="off", iterations=6, tile_size=80)
    from_picture = estimate(photo_path, painting_path, **opts)
    with Image.open(photo_path) as im:
        size = im.size

    def no_decode(*args, **kwargs):
        raise AssertionError("estimate_size read a picture")

    monkeypatch.setattr(Image, "open", no_decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    from_size = estimate_size(size, **opts)
    # The peak counts the process's resident memory, read at each call: a page or two
    # may come and go between them (4 KiB seen), far below any difference of plan.
    assert from_size.peak_bytes == pytest.approx(from_picture.peak_bytes, abs=1 << 20)
    assert from_size.seconds == pytest.approx(from_picture.seconds)
    assert from_size.tiled == from_picture.tiled
