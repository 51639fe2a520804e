"""Colour profiles: photos read as sRGB whatever profile they carry, pictures written as sRGB.

The network was trained on sRGB pictures and brushwork paints in sRGB's numbers, so a
photo tagged with another ICC profile (Display P3 from a phone, Adobe RGB from a camera,
a CMYK print file) is converted to sRGB as it is read, by LittleCMS through Pillow's
ImageCms; read as if its numbers were sRGB, a P3 photo comes out dull and an Adobe RGB
one both dull and shifted.  Every written picture carries the sRGB profile, so that
print drivers and colour-managed viewers do not have to guess.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageCms

# Relative colorimetric: white stays white and in-gamut colours keep their values; the
# few P3/Adobe RGB colours outside sRGB are clipped to its edge.  (For matrix profiles,
# what phones and cameras embed, perceptual rendering falls back to it anyway.)
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
# The Pillow mode that the pixels of a profile's colour space are in.
_MODE_OF_SPACE = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}


class ProfileWarning(UserWarning):
    """A colour profile that could not be used; the picture was read as sRGB."""


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def srgb_icc() -> bytes:
    """The sRGB ICC profile (LittleCMS's built-in one) as embedded in every output."""
    return _srgb().tobytes()


def profile_description(icc: bytes) -> str | None:
    """The profile's own name (e.g. "Display P3"), or None when it cannot be read."""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Profile:
    """An embedded profile to convert from: LittleCMS's handle, its own name (e.g.
    "Display P3") and the Pillow mode its colour space fits (RGB, CMYK or L)."""

    handle: ImageCms.ImageCmsProfile
    description: str
    mode: str


def read_profile(icc: bytes | None, name: str) -> Profile | None:
    """The profile to convert ``name``'s pixels from, or None when they are sRGB already:
    no profile, an sRGB one (IEC 61966-2.1 and its copies), or one that cannot be used
    (warned about, naming ``name``: the numbers are then read as sRGB, as a viewer
    without colour management shows them)."""
    if not icc:
        return None
    try:
        handle = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(handle).strip()
        space = handle.profile.xcolor_space.strip()
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as e:
        warn(f"{name} has a colour profile that cannot be read ({e}); read as sRGB")
        return None
    if "srgb" in description.lower().replace(" ", ""):
        return None
    mode = _MODE_OF_SPACE.get(space)
    if mode is None:
        warn(f"{name} has a {space} colour profile ({description!r}), which brushwork "
              "cannot convert; read as sRGB")
        return None
    return Profile(handle, description or space, mode)


def convert(im: Image.Image, profile: Profile, name: str) -> Image.Image:
    """``im`` (in ``profile.mode``) converted to sRGB, as an RGB picture; on a failure of
    LittleCMS, a warning and the numbers as they are."""
    try:
        out = ImageCms.profileToProfile(im, profile.handle, _srgb(), renderingIntent=INTENT,
                                        outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, ValueError) as e:
        warn(f"{name}'s colour profile ({profile.description!r}) could not be applied ({e}); "
              "read as sRGB")
        return im.convert("RGB")
    assert out is not None
    return out


def warn(message: str) -> None:
    """Say that a picture's profile was not used (its numbers are read as sRGB)."""
    warnings.warn(message, ProfileWarning, stacklevel=5)
