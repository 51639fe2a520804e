"""Tests for brushwork.io.images: loading, checking, saving and tensor conversion."""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile

from brushwork.errors import BrushworkError, ImageError, OutputError
from brushwork.io import images as imageio
from brushwork.io.images import (
    MIN_SIDE,
    BrushworkWarning,
    check_output_path,
    load_image,
    read_metadata,
    resize_to,
    save_image,
    scaled_size,
    to_image,
    to_tensor,
)

# ---------------------------------------------------------------- helpers


def solid(mode, color, size=(16, 16)):
    return Image.new(mode, size, color)


def saved(tmp_path, im, name="in.png", **kw):
    """Save ``im`` under tmp_path and return the path."""
    path = tmp_path / name
    im.save(path, **kw)
    return path


def pixel(im, xy=(0, 0)):
    return im.getpixel(xy)


def read(path):
    """Open an image file with plain Pillow, fully loaded and closed."""
    with Image.open(path) as im:
        im.load()
        return im


def png_16bit(path, color_type, samples, size=(16, 16)):
    """Write a 16-bit PNG by hand (Pillow cannot write 48-bit RGB)."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    w, h = size
    row = b"\x00" + struct.pack(f">{len(samples)}H", *samples) * w
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    data += chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def noise(size=(64, 64)):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# ---------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match=r"^content image '.*nope\.png' does not exist$"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path, role="style")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        load_image(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, not a picture\n")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(info.value) == (
        f"content image '{path}' is not an image file (cannot identify image format; "
        "accepted: PNG, JPEG, WebP, GIF, BMP, TIFF)"
    )


@pytest.mark.parametrize("fmt", ["EPS", "PCX", "ICO", "XBM", "PPM"])
def test_other_pillow_format_named_jpg_is_refused_undecoded(tmp_path, monkeypatch, fmt):
    # Pillow can read these, but only the formats the README lists may reach a decoder:
    # an EPS would be handed to Ghostscript. The file's real format is named from its
    # signature alone; its plugin's opener must never run.
    path = tmp_path / "photo.jpg"
    Image.new("1" if fmt == "XBM" else "RGB", (32, 32)).save(path, format=fmt)
    Image.init()
    opened = []

    def spy(*args, **kwargs):
        opened.append(fmt)
        raise AssertionError(f"the {fmt} plugin was asked to open the file")

    monkeypatch.setitem(Image.OPEN, fmt, (spy, Image.OPEN[fmt][1]))
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(info.value) == (
        f"content image '{path}' is in {fmt} format, which is not accepted "
        "(accepted: PNG, JPEG, WebP, GIF, BMP, TIFF)"
    )
    assert opened == []


def test_input_formats_are_the_studios():
    from brushwork.studio import uploads

    assert uploads.FORMATS is imageio.INPUT_FORMATS


@pytest.mark.parametrize("fmt,name", [("PNG", "cut.png"), ("JPEG", "cut.jpg")])
def test_truncated(tmp_path, fmt, name):
    path = saved(tmp_path, noise(), name, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(path, role="style")
    msg = str(info.value)
    assert msg.startswith(f"style image '{path}'") and "\n" not in msg


def test_unreadable_chmod(tmp_path):
    path = saved(tmp_path, solid("RGB", (1, 2, 3)))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_unreadable_simulated(tmp_path, monkeypatch):
    path = saved(tmp_path, solid("RGB", (1, 2, 3)))

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio, "open", deny, raising=False)
    with pytest.raises(ImageError, match=r"cannot be read \(permission denied\)"):
        load_image(path)


def test_bomb_checked_from_header(tmp_path, monkeypatch):
    path = saved(tmp_path, solid("RGB", (0, 0, 0), (40, 30)), "big.png")

    def no_decoding(self):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=1000)
    assert str(info.value) == (
        f"content image '{path}' is 40x30 = 0.0012 megapixels, "
        "over the limit of 0.001 (max_pixels)"
    )


def test_bomb_message_in_megapixels(tmp_path):
    # The header of a 20000x20000 PNG is tiny; we never decode it.
    path = png_16bit(tmp_path / "huge.png", 0, [0], size=(1, 1))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 20000, 20000)  # patch IHDR width/height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    expected = r"is 20000x20000 = 400 megapixels, over the limit of 100 \(max_pixels\)$"
    with pytest.raises(ImageError, match=expected):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own, 1024^3 / 4 / 3, restored


def test_pillow_bomb_error_is_converted(tmp_path, monkeypatch):
    path = saved(tmp_path, solid("RGB", (0, 0, 0)))
    before = Image.MAX_IMAGE_PIXELS

    def bomb(self):
        raise Image.DecompressionBombError("Image size exceeds limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", bomb)
    with pytest.raises(ImageError, match=r"limit of .* megapixels \(max_pixels\)"):
        load_image(path)
    after = Image.MAX_IMAGE_PIXELS
    assert after == before


def test_pillow_limit_is_ours_and_restored(tmp_path):
    # Above Pillow's default limit but within ours: accepted, no bomb warning.
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100
    try:
        path = saved(tmp_path, solid("RGB", (5, 6, 7), (20, 20)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            im = load_image(path, max_pixels=400)
        assert im.size == (20, 20)
        assert Image.MAX_IMAGE_PIXELS == 100
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_too_small(tmp_path):
    path = saved(tmp_path, solid("RGB", (0, 0, 0), (8, 12)), "x.png")
    with pytest.raises(ImageError) as info:
        load_image(path, role="style")
    assert str(info.value) == (
        f"style image '{path}' is 8x12 pixels; at least 16 pixels are needed on each side"
    )


def test_errors_are_brushwork_errors():
    assert issubclass(ImageError, BrushworkError) and issubclass(OutputError, BrushworkError)


# ---------------------------------------------------------------- modes


def test_result_is_loaded_rgb_and_file_closed(tmp_path):
    path = saved(tmp_path, solid("RGB", (10, 20, 30)))
    im = load_image(path)
    assert type(im) is Image.Image and im.mode == "RGB"
    os.remove(path)  # file no longer needed
    assert pixel(im) == (10, 20, 30)


@pytest.mark.parametrize(
    "mode,color,expected",
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("1", 0, (0, 0, 0)),
        ("LA", (100, 0), (255, 255, 255)),
        ("LA", (100, 255), (100, 100, 100)),
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
    ],
)
def test_simple_modes(tmp_path, mode, color, expected):
    assert pixel(load_image(saved(tmp_path, solid(mode, color)))) == expected


def test_half_alpha_over_white_in_memory():
    im = load_image(solid("RGBA", (0, 0, 0, 128)))
    assert all(abs(c - 127) <= 1 for c in pixel(im))


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    assert pixel(load_image(saved(tmp_path, pal, "p.png"))) == (200, 10, 20)
    pal.info["transparency"] = 1
    path = saved(tmp_path, pal, "pt.png", transparency=1)
    assert pixel(load_image(path)) == (255, 255, 255)


def test_pa_mode():
    im = Image.new("PA", (16, 16), (1, 0))
    im.putpalette([0, 0, 0, 9, 9, 9] + [0] * 762)
    assert pixel(load_image(im)) == (255, 255, 255)


@pytest.mark.parametrize("value,expected", [(65535, 255), (32768, 128), (0, 0), (257, 1)])
def test_16bit_grey_png(tmp_path, value, expected):
    path = saved(tmp_path, Image.fromarray(np.full((16, 16), value, dtype=np.uint16)))
    assert read(path).mode == "I;16"
    assert pixel(load_image(path)) == (expected,) * 3


def test_16bit_big_endian_and_int_modes():
    raw = struct.pack(">H", 32768) * 256
    big = Image.frombytes("I;16B", (16, 16), raw)
    assert pixel(load_image(big)) == (128, 128, 128)
    i32 = Image.fromarray(np.full((16, 16), 65535, dtype=np.int32))
    assert i32.mode == "I"
    assert pixel(load_image(i32)) == (255, 255, 255)


def test_48bit_rgb_png(tmp_path):
    path = png_16bit(tmp_path / "deep.png", 2, [65535, 32768, 0])
    assert pixel(load_image(path)) == (255, 128, 0)


def test_64bit_rgba_png(tmp_path):
    path = png_16bit(tmp_path / "deep.png", 6, [0, 0, 65535, 0])  # transparent blue
    assert pixel(load_image(path)) == (255, 255, 255)


@pytest.mark.parametrize("value,expected", [(1.0, 255), (0.5, 128), (200.0, 200), (300.0, 255)])
def test_float_mode(value, expected):
    im = Image.fromarray(np.full((16, 16), value, dtype=np.float32))
    assert im.mode == "F"
    assert pixel(load_image(im)) == (expected,) * 3


def test_cmyk_cyan(tmp_path):
    path = saved(tmp_path, solid("CMYK", (255, 0, 0, 0)), "c.jpg", quality=100)
    r, g, b = pixel(load_image(path), (8, 8))
    assert r <= 10 and g >= 245 and b >= 245


def test_exif_orientation_6(tmp_path):
    # Stored 32x16 (wide) with a red top-left block; orientation 6 = rotate 90 deg clockwise.
    im = solid("RGB", (0, 0, 255), (32, 16))
    im.paste((255, 0, 0), (0, 0, 4, 4))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = saved(tmp_path, im, "phone.png", exif=exif.tobytes())
    out = load_image(path)
    assert out.size == (16, 32)
    assert pixel(out, (15, 0)) == (255, 0, 0)
    assert pixel(out, (0, 0)) == (0, 0, 255)


def test_animated_gif_warns_and_uses_first_frame(tmp_path):
    frames = [solid("RGB", (255, 0, 0)), solid("RGB", (0, 255, 0)), solid("RGB", (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    with pytest.warns(BrushworkWarning, match=r"anim\.gif' has 3 frames; using the first"):
        im = load_image(path)
    assert pixel(im) == (255, 0, 0)


def test_still_image_does_not_warn(tmp_path):
    path = saved(tmp_path, solid("RGB", (1, 1, 1)), "still.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(path)


# ---------------------------------------------------------------- arrays and PIL images


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.full((16, 20), 9, dtype=np.uint8), (9, 9, 9)),
        (np.full((16, 20, 3), (1, 2, 3), dtype=np.uint8), (1, 2, 3)),
        (np.full((16, 20, 4), (1, 2, 3, 0), dtype=np.uint8), (255, 255, 255)),
        (np.full((16, 20, 3), 0.5), (128, 128, 128)),
        (np.full((16, 20), 1.0, dtype=np.float32), (255, 255, 255)),
    ],
)
def test_arrays(array, expected):
    im = load_image(array)
    assert im.mode == "RGB" and im.size == (20, 16) and pixel(im) == expected


@pytest.mark.parametrize(
    "array,match",
    [
        (np.zeros((16, 16, 2), dtype=np.uint8), "shape"),
        (np.zeros((16, 16), dtype=np.uint16), "dtype"),
        (np.full((16, 16), 1.5), r"\[0, 1\]"),
        (np.full((16, 16), np.nan), "NaN"),
        (np.zeros((4, 16), dtype=np.uint8), "4 pixels|16 pixels are needed"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(ImageError, match=match) as info:
        load_image(array, role="style")
    assert str(info.value).startswith("style image '<array>'")


def test_pil_image_too_large_or_small():
    with pytest.raises(ImageError, match=r"^content image '<image>' is 10x10 pixels"):
        load_image(solid("RGB", 0, (10, 10)))
    with pytest.raises(ImageError, match=r"'<image>' is 40x40 = .* \(max_pixels\)"):
        load_image(solid("RGB", 0, (40, 40)), max_pixels=1000)


def test_wrong_source_type():
    with pytest.raises(TypeError):
        load_image(42)


# ---------------------------------------------------------------- output paths


def test_output_bad_extension(tmp_path):
    expected = r"\.gif'; use one of \.png, \.jpg, \.jpeg, \.webp, \.tif, \.tiff, \.bmp$"
    with pytest.raises(OutputError, match=expected):
        check_output_path(tmp_path / "out.gif")
    with pytest.raises(OutputError, match="no extension"):
        check_output_path(tmp_path / "out")


def test_output_exists(tmp_path):
    path = saved(tmp_path, solid("RGB", 0), "out.png")
    with pytest.raises(OutputError) as info:
        check_output_path(path)
    assert str(info.value) == f"output '{path}' exists; pass --force to overwrite"
    assert check_output_path(path, force=True) == path.resolve()


def test_output_is_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path / "d.png", force=True)


def test_output_parent_missing(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "no" / "out.png")


def test_output_ok_returns_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_path("out.JPG") == (tmp_path / "out.JPG").resolve()
    assert os.listdir(tmp_path) == []  # the probe file is gone


def test_output_dir_not_writable_chmod(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: os.access says writable")
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(locked / "out.png")
    finally:
        locked.chmod(0o700)


def test_output_dir_not_writable_probe(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OutputError, match=r"is not writable \(Permission denied\)"):
        check_output_path(tmp_path / "out.png")


# ---------------------------------------------------------------- symlinked outputs
# A link is written through, as cp does: its target is replaced, the link stays a link,
# and every side file goes beside the target, named after it.


def test_output_link_is_written_through(tmp_path):
    real = tmp_path / "real" / "picture.png"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    with pytest.raises(OutputError) as info:
        save_image(solid("RGB", (9, 9, 9)), link)
    assert str(info.value) == f"output '{link}' exists; pass --force to overwrite"
    assert check_output_path(link, force=True) == real
    assert save_image(solid("RGB", (9, 9, 9)), link, force=True) == real
    assert link.is_symlink() and os.readlink(link) == str(real)
    with Image.open(real) as im:
        assert im.format == "PNG" and im.getpixel((0, 0)) == (9, 9, 9)
    assert sorted(os.listdir(real.parent)) == ["picture.png"]  # no temporary file left


def test_output_link_sidecar_goes_beside_the_target(tmp_path):
    real = tmp_path / "real" / "picture.jpg"
    real.parent.mkdir()
    link = tmp_path / "link.jpg"
    real.write_bytes(b"old")
    link.symlink_to(real)
    save_image(solid("RGB", 0), link, metadata={"a": 1}, force=True)
    assert (real.parent / "picture.jpg.json").is_file()
    assert read_metadata(link) == read_metadata(real) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["link.jpg", "real"]


def test_output_link_to_another_format_refused_before_writing(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    link = tmp_path / "link.png"
    link.symlink_to(notes)
    with pytest.raises(OutputError) as info:
        save_image(solid("RGB", 0), link, force=True)
    assert str(info.value) == (
        f"output '{link}' is a link to '{notes}', whose extension does not name the PNG "
        "format it would be written in"
    )
    assert notes.read_text() == "precious"
    # A link to another name of the same format is fine.
    link.unlink()
    link.symlink_to(tmp_path / "x.PNG")
    (tmp_path / "x.PNG").write_bytes(b"old")
    save_image(solid("RGB", 0), link, force=True)
    assert Image.open(tmp_path / "x.PNG").format == "PNG"


def test_output_dangling_link_refused(tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to("gone/picture.png")
    with pytest.raises(OutputError) as info:
        check_output_path(link, force=True)
    assert str(info.value) == (
        f"output '{link}' is a link to 'gone/picture.png', which does not exist; "
        "remove the link or point it at a file"
    )
    assert sorted(os.listdir(tmp_path)) == ["link.png"]


def test_output_link_loop_refused(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OutputError, match=r"^output '.*a.png' is a link"):
        check_output_path(a, force=True)


def test_output_link_into_unwritable_directory(tmp_path, monkeypatch):
    real_dir = tmp_path / "elsewhere"
    real_dir.mkdir()
    (real_dir / "p.png").write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real_dir / "p.png")
    probed = []
    made = imageio.tempfile.NamedTemporaryFile

    def probe(*args, dir=None, **kwargs):
        probed.append(Path(dir))
        if Path(dir) == real_dir:
            raise PermissionError(13, "Permission denied")
        return made(*args, dir=dir, **kwargs)

    monkeypatch.setattr(imageio.tempfile, "NamedTemporaryFile", probe)
    with pytest.raises(OutputError, match=r"directory '.*elsewhere' is not writable"):
        check_output_path(link, force=True)
    assert probed == [real_dir]  # the target's folder, not the link's


def test_side_file_link_to_directory_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "out.jpg.json").symlink_to(tmp_path / "d")
    with pytest.raises(OutputError, match=r"^metadata file '.*out.jpg.json' is a directory$"):
        check_output_path(tmp_path / "out.jpg", force=True, metadata=True)
    assert check_output_path(tmp_path / "out.jpg", force=True) == tmp_path / "out.jpg"


# ---------------------------------------------------------------- saving


def test_save_refuses_overwrite_then_forces(tmp_path):
    path = saved(tmp_path, solid("RGB", (1, 1, 1)), "out.png")
    with pytest.raises(OutputError, match="pass --force"):
        save_image(solid("RGB", (9, 9, 9)), path)
    assert pixel(read(path)) == (1, 1, 1)
    assert save_image(solid("RGB", (9, 9, 9)), path, force=True) == path.resolve()
    assert pixel(read(path)) == (9, 9, 9)


@pytest.mark.parametrize("error", [OSError("disk full"), RuntimeError("boom")])
def test_save_is_atomic(tmp_path, monkeypatch, error):
    path = saved(tmp_path, noise(), "out.png")
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half-written")
        raise error

    monkeypatch.setattr(Image.Image, "save", broken_save)
    expected = OutputError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected):
        save_image(solid("RGB", 0), path, force=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_rechecks_before_replace(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    real_save = Image.Image.save

    def racing_save(self, fp, *args, **kwargs):
        path.write_bytes(b"someone else")  # target appears during the write
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", racing_save)
    with pytest.raises(OutputError, match="exists"):
        save_image(solid("RGB", 0), path)
    assert path.read_bytes() == b"someone else"
    assert os.listdir(tmp_path) == ["out.png"]


def test_saved_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_image(solid("RGB", 0), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["o.png", "o.jpg", "o.jpeg", "o.webp", "o.tif", "o.tiff", "o.bmp"])
def test_save_every_format(tmp_path, name):
    path = save_image(solid("RGBA", (200, 100, 50, 255)), tmp_path / name)
    r, g, b = pixel(load_image(path))
    assert abs(r - 200) <= 3 and abs(g - 100) <= 3 and abs(b - 50) <= 3


def test_jpeg_quality_95(tmp_path):
    path = save_image(noise(), tmp_path / "q.jpg")
    with Image.open(path) as im:
        # Quality 95 -> first luminance quantisation entry is 2 (quality 75 gives 8).
        assert im.quantization[0][0] == 2


def test_png_metadata_round_trip(tmp_path):
    meta = {"style_weight": 1e6, "layers": ["conv1_1", "conv2_1"], "note": "café"}
    path = save_image(solid("RGB", 0), tmp_path / "out.png", metadata=meta)
    assert read_metadata(path) == meta
    assert not (tmp_path / "out.png.json").exists()
    with Image.open(path) as im:
        assert "brushwork" in im.text


def test_jpeg_sidecar_round_trip(tmp_path):
    meta = {"steps": 300, "seed": 7}
    path = save_image(solid("RGB", 0), tmp_path / "out.jpg", metadata=meta)
    assert path == (tmp_path / "out.jpg").resolve()
    assert (tmp_path / "out.jpg.json").is_file()
    assert read_metadata(path) == meta
    assert sorted(os.listdir(tmp_path)) == ["out.jpg", "out.jpg.json"]


def test_existing_sidecar_refused_before_writing(tmp_path):
    (tmp_path / "out.jpg.json").write_text("{}")
    with pytest.raises(OutputError, match="pass --force"):
        save_image(solid("RGB", 0), tmp_path / "out.jpg", metadata={"a": 1})
    assert not (tmp_path / "out.jpg").exists()
    save_image(solid("RGB", 0), tmp_path / "out.jpg", metadata={"a": 1}, force=True)
    assert read_metadata(tmp_path / "out.jpg") == {"a": 1}


def test_no_metadata_and_bad_metadata(tmp_path):
    path = save_image(solid("RGB", 0), tmp_path / "plain.png")
    assert read_metadata(path) is None
    with pytest.raises(OutputError, match="JSON"):
        save_image(solid("RGB", 0), tmp_path / "bad.png", metadata={"x": object()})
    assert not (tmp_path / "bad.png").exists()
    (tmp_path / "x.jpg.json").write_text("[1, 2")
    with pytest.raises(ImageError, match="invalid metadata JSON"):
        read_metadata(tmp_path / "x.jpg")


def test_save_tensor(tmp_path):
    t = torch.zeros(1, 3, 16, 24)
    t[:, 0] = 255
    path = save_image(t, tmp_path / "t.png")
    assert read(path).size == (24, 16)
    assert pixel(read(path).convert("RGB")) == (255, 0, 0)


# ---------------------------------------------------------------- tensors and sizes


def test_to_tensor_layout():
    im = Image.new("RGB", (5, 3), (10, 20, 30))
    t = to_tensor(im)
    assert t.shape == (1, 3, 3, 5) and t.dtype == torch.float32
    assert t[0, :, 2, 4].tolist() == [10.0, 20.0, 30.0]


def test_tensor_round_trip_exact():
    im = noise((23, 17))
    back = to_image(to_tensor(im))
    assert np.array_equal(np.asarray(back), np.asarray(im))
    assert np.array_equal(np.asarray(to_image(to_tensor(im)[0].double())), np.asarray(im))


def test_to_image_clamps_and_rounds():
    t = torch.tensor([-5.0, 300.0, 127.6]).view(3, 1, 1).expand(3, 2, 2)
    assert pixel(to_image(t)) == (0, 255, 128)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_to_image_rejects_non_finite(bad):
    t = torch.zeros(1, 3, 4, 4)
    t[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="image tensor contains NaN or inf"):
        to_image(t)


def test_to_image_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        to_image(torch.zeros(2, 3, 4, 4))


def test_resize_filters():
    im = noise((40, 30))
    down, up = Image.Resampling.LANCZOS, Image.Resampling.BICUBIC
    assert resize_to(im, (20, 15)).tobytes() == im.resize((20, 15), down).tobytes()
    assert resize_to(im, (80, 60)).tobytes() == im.resize((80, 60), up).tobytes()
    assert resize_to(im, (80, 60)).tobytes() != im.resize((80, 60), down).tobytes()
    same = resize_to(im, (40, 30))
    assert same is not im and same.tobytes() == im.tobytes()


@pytest.mark.parametrize(
    "size,long_side,expected",
    [
        ((400, 300), 200, (200, 150)),
        ((300, 400), 200, (150, 200)),
        ((3, 2), 4, (4, 3)),  # 2.67 -> 3
        ((10, 5), 3, (3, 2)),  # 1.5 rounds up
        ((1000, 1), 10, (10, 1)),  # never below 1
        ((7, 7), 512, (512, 512)),
    ],
)
def test_scaled_size(size, long_side, expected):
    assert scaled_size(size, long_side) == expected


@given(st.integers(1, 10_000), st.integers(1, 10_000), st.integers(1, 4096))
def test_scaled_size_properties(w, h, long_side):
    sw, sh = scaled_size((w, h), long_side)
    assert max(sw, sh) == long_side and min(sw, sh) >= 1
    assert abs(sw - w * long_side / max(w, h)) <= 0.5 or sw == 1
    assert abs(sh - h * long_side / max(w, h)) <= 0.5 or sh == 1


def test_min_side_constant():
    assert MIN_SIDE == 16 and imageio.DEFAULT_MAX_PIXELS == 100_000_000


def test_probe_leaves_no_files(tmp_path):
    check_output_path(tmp_path / "a.png")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".brushwork")]
    assert tempfile.gettempdir()  # tempfile untouched by the probe


def test_messages_stay_on_one_line(tmp_path):
    path = tmp_path / "two\nlines.png"
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "\n" not in str(info.value) and "two\\nlines.png' does not exist" in str(info.value)
