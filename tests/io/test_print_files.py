"""Files for print: colour profiles read and written, 16 bits per channel, dpi."""

from __future__ import annotations

import io
import warnings

import numpy as np
import png
import pytest
import tifffile
import torch
from icc_support import adobe_rgb, display_p3, grey_profile
from PIL import Image, ImageCms

import brushwork
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, OutputError
from brushwork.io.images import load_image, load_image_bytes, read_metadata, save_image
from brushwork.io.profiles import ProfileWarning, profile_description, srgb_icc

# Saturated colours, where Display P3 and Adobe RGB numbers differ most from sRGB's, and
# a grey, which they keep (nearly).
COLOURS = [(220, 40, 40), (40, 190, 60), (30, 60, 210), (240, 200, 40), (128, 128, 128)]


def swatches() -> Image.Image:
    a = np.array(COLOURS, dtype=np.uint8).repeat(8, axis=0)[None].repeat(16, axis=0)
    return Image.fromarray(a)  # 40x16, each colour 8 px wide


def in_profile(srgb: Image.Image, icc: bytes) -> Image.Image:
    """The sRGB picture's colours as numbers of the profile ``icc`` (tagged with it)."""
    target = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    out = ImageCms.profileToProfile(srgb, ImageCms.createProfile("sRGB"), target,
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                    outputMode="RGB")
    assert out is not None
    out.info["icc_profile"] = icc
    return out


@pytest.mark.parametrize("profile", [display_p3, adobe_rgb], ids=["display-p3", "adobe-rgb"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_a_profiled_photo_is_read_as_srgb(tmp_path, profile, fmt):
    icc = profile()
    tagged = in_profile(swatches(), icc)
    raw = np.asarray(tagged, dtype=np.int16)
    ref = np.asarray(swatches(), dtype=np.int16)
    # The numbers as stored are far from the sRGB colours: read as sRGB they would be wrong.
    assert np.abs(raw - ref).max() > 15
    path = tmp_path / f"photo.{fmt.lower()}"
    options = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        options["lossless"] = True
    tagged.save(path, format=fmt, icc_profile=icc, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = np.asarray(load_image(path), dtype=np.int16)
    # 8-bit numbers in each space, rounded twice; JPEG also subsamples chroma at the edges.
    tolerance = 10 if fmt == "JPEG" else 3
    centres = loaded[:, 4::8]  # the middle of each swatch
    assert np.abs(centres - ref[:, 4::8]).max() <= tolerance
    # Bytes (the studio's uploads) and an opened Pillow image go the same way.
    from_bytes = np.asarray(load_image_bytes(path.read_bytes(), name="upload"), dtype=np.int16)
    assert np.abs(from_bytes - loaded).max() == 0
    with Image.open(path) as im:
        assert np.abs(np.asarray(load_image(im), dtype=np.int16) - loaded).max() == 0


def test_a_grey_photo_with_a_linear_profile_is_brightened_to_srgb(tmp_path):
    path = tmp_path / "linear.png"
    Image.new("L", (20, 20), 55).save(path, icc_profile=grey_profile("Linear grey", 1.0))
    loaded = np.asarray(load_image(path), dtype=np.int16)
    # Linear 55/255 = 0.216 of white is 128 in sRGB's curve; read as sRGB it would stay 55.
    assert loaded.shape == (20, 20, 3)
    assert np.abs(loaded - 128).max() <= 2


def test_an_srgb_tagged_photo_keeps_its_numbers(tmp_path):
    path = tmp_path / "srgb.png"
    swatches().save(path, icc_profile=srgb_icc())
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(swatches()))


def test_an_unreadable_profile_is_a_warning_and_the_numbers_are_kept(tmp_path):
    path = tmp_path / "bad.png"
    swatches().save(path, icc_profile=b"not a profile at all" * 10)
    with pytest.warns(ProfileWarning, match="bad.png.*colour profile that cannot be read"):
        loaded = load_image(path)
    assert np.array_equal(np.asarray(loaded), np.asarray(swatches()))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_every_output_carries_the_srgb_profile_and_its_dpi(tmp_path, suffix):
    out = save_image(swatches(), tmp_path / f"out{suffix}", dpi=300)
    with Image.open(out) as im:
        assert profile_description(im.info["icc_profile"]) is not None
        assert "sRGB" in profile_description(im.info["icc_profile"])
        if suffix != ".webp":  # WebP has no resolution field
            assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)


def test_sixteen_bit_png_keeps_what_eight_bits_round_away(tmp_path):
    # A ramp finer than 8 bits: 0, 0.25, 0.5, ... grey levels.
    ramp = torch.arange(64, dtype=torch.float32).mul(0.25).view(1, 1, 1, 64).expand(1, 3, 16, 64)
    meta = {"hello": "world"}
    out = save_image(ramp + 100, tmp_path / "deep.png", bit_depth=16, dpi=240, metadata=meta)
    width, height, rows, info = png.Reader(filename=str(out)).read()
    assert (width, height, info["bitdepth"], info["planes"]) == (64, 16, 16, 3)
    values = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(16, 64, 3)
    expected = np.round((ramp[0, 0, 0].numpy() + 100) * 65535 / 255)
    assert np.array_equal(values[0, :, 1], expected.astype(np.uint16))
    assert len(np.unique(values[0, :, 0])) == 64  # 8 bits would keep 16 of these levels
    with Image.open(out) as im:  # what other readers see: the profile and the dpi
        assert "sRGB" in profile_description(im.info["icc_profile"])
        assert im.info["dpi"] == pytest.approx((240, 240), abs=0.5)
    assert read_metadata(out) == meta


def test_sixteen_bit_tiff(tmp_path):
    picture = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0)) * 255
    out = save_image(picture, tmp_path / "deep.tif", bit_depth=16, dpi=300, metadata={"a": 1})
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        data = page.asarray()
        assert data.dtype == np.uint16 and data.shape == (20, 30, 3)
        assert "sRGB" in profile_description(page.tags["InterColorProfile"].value)
        assert page.tags["XResolution"].value == (300, 1)
    expected = picture[0].permute(1, 2, 0).double().numpy() * 65535 / 255
    assert np.abs(data - expected).max() <= 0.5 + 1e-3  # float32 scaling, then rounded
    assert read_metadata(out) == {"a": 1}  # TIFF's settings go beside it


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp"])
def test_sixteen_bits_in_a_format_without_them_is_refused_before_writing(tmp_path, suffix):
    target = tmp_path / f"out{suffix}"
    with pytest.raises(OutputError, match=r"16 bits per channel needs a \.png or \.tif"):
        save_image(torch.zeros(1, 3, 16, 16), target, bit_depth=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    ({"bit_depth": 12}, "bit_depth must be one of 8, 16, not 12"),
    ({"bit_depth": True}, "bit_depth must be one of 8, 16"),
    ({"dpi": 0}, "dpi must be a positive finite number"),
    ({"dpi": float("nan")}, "dpi must be a positive finite number"),
    ({"dpi": 1e9}, "dpi must be at most"),
])
def test_bad_print_settings_are_one_line(options, message):
    with pytest.raises(BrushworkError, match=message):
        Settings(**options)


def test_a_sixteen_bit_run_writes_its_float_picture(use_tiny, photo_path, painting_path,
                                                    tmp_path):
    result = brushwork.stylize(photo_path, painting_path, size=32, iterations=4,
                               multiscale="off", bit_depth=16, dpi=300,
                               preserve_colors="luminance", seed=0)
    assert result.deep is not None
    out = result.save(tmp_path / "run.png")
    _, _, rows, info = png.Reader(filename=str(out)).read()
    assert info["bitdepth"] == 16
    values = np.vstack([np.asarray(r, dtype=np.float64) for r in rows]).reshape(26, 32, 3)
    # The 16-bit file is the 8-bit picture's finer version (colour transfer included).
    eight = np.asarray(result.image, dtype=np.float64)
    assert np.abs(values / 257 - eight).max() <= 0.5 + 1e-6
    assert read_metadata(out)["settings"]["bit_depth"] == 16


def test_an_eight_bit_run_keeps_no_float_copy(use_tiny, photo_path, painting_path):
    result = brushwork.stylize(photo_path, painting_path, size=32, iterations=2,
                               multiscale="off")
    assert result.deep is None


def test_cli_refuses_sixteen_bit_jpeg_before_painting(capsys, tiny_model_file, photo_path,
                                                      painting_path, tmp_path, monkeypatch):
    import brushwork.commands.stylize as command
    from brushwork.commands import main

    monkeypatch.setattr(command, "stylize", lambda *a, **k: pytest.fail("painted"))
    code = main(["stylize", str(photo_path), str(painting_path), "-o", str(tmp_path / "o.jpg"),
                 "--model", str(tiny_model_file), "--bit-depth", "16"])
    err = capsys.readouterr().err
    assert code != 0
    assert "16 bits per channel needs a .png or .tif output, not JPEG" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.jpg").exists()


def test_cli_writes_a_sixteen_bit_tiff_at_its_dpi(capsys, tiny_model_file, photo_path,
                                                  painting_path, tmp_path):
    from brushwork.commands import main

    out = tmp_path / "print.tif"
    code = main(["stylize", str(photo_path), str(painting_path), "-o", str(out), "--model",
                 str(tiny_model_file), "--size", "32", "--iterations", "2", "--multiscale",
                 "off", "--quiet", "--bit-depth", "16", "--dpi", "300"])
    assert code == 0, capsys.readouterr().err
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].asarray().dtype == np.uint16
        assert tif.pages[0].tags["XResolution"].value == (300, 1)
    assert read_metadata(out)["settings"]["dpi"] == 300


def test_video_refuses_print_options(tmp_path):
    from brushwork.video.paint import stylize_video

    with pytest.raises(BrushworkError, match="a video is encoded at 8 bits"):
        stylize_video(tmp_path / "clip.mp4", tmp_path / "p.png", tmp_path / "out.mp4",
                      bit_depth=16)
    assert list(tmp_path.iterdir()) == []


def test_a_batch_of_sixteen_bit_jpegs_is_refused_in_the_check(photo_path, painting_path,
                                                               tmp_path):
    from brushwork.batch import check, from_plan_file

    plan = tmp_path / "plan.csv"
    plan.write_text(f"content,styles,output,bit_depth\n{photo_path},{painting_path},a.jpg,16\n"
                    f"{photo_path},{painting_path},b.png,16\n")
    with pytest.raises(BrushworkError) as e:
        check(from_plan_file(plan, tmp_path / "out"))
    assert "output 'a.jpg': 16 bits per channel needs a .png or .tif output" in str(e.value)
    assert "b.png" not in str(e.value)
