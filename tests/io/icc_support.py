"""Real ICC profiles for the tests, made from published colour-space numbers.

Pillow can only make sRGB, Lab and XYZ profiles, and no profile file ships with the test
tools, so this writes ICC v2 display profiles (matrix/TRC: what phones and cameras
embed) from a colour space's primaries, white point and tone curve, following the ICC.1
specification's layout.  LittleCMS reads them like any other.
"""

from __future__ import annotations

import struct

import numpy as np

D50 = (0.9642, 1.0, 0.8249)  # the profile connection space's white
# Bradford cone response matrix (ICC.1 annex E).
BRADFORD = np.array([[0.8951, 0.2664, -0.1614],
                     [-0.7502, 1.7135, 0.0367],
                     [0.0389, -0.0685, 1.0296]])
D65_XY = (0.3127, 0.3290)
# Display P3: DCI-P3 primaries, D65 white, the sRGB tone curve (Apple's definition).
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
# Adobe RGB (1998): its primaries, D65 white, a pure power of 563/256.
ADOBE_PRIMARIES = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)  # IEC 61966-2-1
ADOBE_GAMMA = 563 / 256


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def colorants(primaries: tuple[tuple[float, float], ...],
              white: tuple[float, float] = D65_XY) -> np.ndarray:
    """The RGB -> XYZ matrix of a colour space, chromatically adapted to D50 (Bradford):
    its columns are the red, green and blue colorant tags."""
    p = np.stack([_xyz(c) for c in primaries], axis=1)
    w = _xyz(white)
    m = p * np.linalg.solve(p, w)  # scale the primaries so that RGB 1,1,1 is the white
    cone_src, cone_dst = BRADFORD @ w, BRADFORD @ np.array(D50)
    adapt = np.linalg.inv(BRADFORD) @ np.diag(cone_dst / cone_src) @ BRADFORD
    return adapt @ m


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz: np.ndarray | tuple[float, ...]) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15f16(float(v)) for v in xyz)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # textDescriptionType: ASCII, then empty Unicode and ScriptCode parts.
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _text_tag(text: str) -> bytes:
    return b"text" + b"\0" * 4 + text.encode("ascii") + b"\0"


def _curve_tag(gamma: float | None = None, params: tuple[float, ...] | None = None) -> bytes:
    if params is not None:  # parametricCurveType, function 3 (the sRGB form)
        return (b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0)
                + b"".join(_s15f16(v) for v in params))
    assert gamma is not None
    return b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256))


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def rgb_profile(description: str, primaries: tuple[tuple[float, float], ...],
                gamma: float | None = None, curve: tuple[float, ...] | None = None) -> bytes:
    """An ICC v2 RGB display profile's bytes."""
    m = colorants(primaries)
    trc = _curve_tag(gamma, curve)
    return _profile(b"RGB ", [
        (b"desc", _desc_tag(description)), (b"cprt", _text_tag("No copyright, test data")),
        (b"wtpt", _xyz_tag(D50)),
        (b"rXYZ", _xyz_tag(m[:, 0])), (b"gXYZ", _xyz_tag(m[:, 1])), (b"bXYZ", _xyz_tag(m[:, 2])),
        (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)])


def grey_profile(description: str, gamma: float) -> bytes:
    """An ICC v2 grey display profile's bytes: one tone curve, the D50 white."""
    return _profile(b"GRAY", [
        (b"desc", _desc_tag(description)), (b"cprt", _text_tag("No copyright, test data")),
        (b"wtpt", _xyz_tag(D50)), (b"kTRC", _curve_tag(gamma))])


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        data = _pad(data)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = 128 + table_size + len(body)
    header = (struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"mntr"
              + space + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 4 + b"\0" * 4
              + b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
              + b"".join(_s15f16(v) for v in D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + table + body


def display_p3() -> bytes:
    return rgb_profile("Display P3", P3_PRIMARIES, curve=SRGB_CURVE)


def adobe_rgb() -> bytes:
    return rgb_profile("Adobe RGB (1998)", ADOBE_PRIMARIES, gamma=ADOBE_GAMMA)
