"""Finding faces in the photo, for ``--keep-faces`` (brushwork.maths.faces weights them).

OpenCV's frontal-face Haar cascade ships inside the opencv wheel, so nothing is
downloaded at run time.  OpenCV is the optional ``faces`` extra; OpenCV 5 wheels no
longer carry CascadeClassifier, hence the extra's ``<5``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from PIL import Image

from brushwork.errors import BrushworkError
from brushwork.maths.faces import Box

INSTALL = "pip install 'brushwork[faces]'"
CASCADE = "haarcascade_frontalface_default.xml"
# The detector runs on the photo shrunk to this long side: faces smaller than about a
# twentieth of it are not looked for, and a print-size photo is searched in a blink.
DETECT_LONG_SIDE = 640
# Fraction of the searched picture's short side below which a face is ignored.
MIN_FACE = 0.05


def _cascade() -> Any:
    """OpenCV's frontal-face detector, or a BrushworkError naming the extra."""
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        cv2 = None
    if cv2 is None or not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise BrushworkError(f"keep_faces needs OpenCV 4 with its face detector "
                             f"(opencv-python-headless<5): {INSTALL}")
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if detector.empty():
        raise BrushworkError(f"keep_faces: OpenCV's {CASCADE} could not be read: {INSTALL}")
    return detector


def detect_faces(photo: Image.Image) -> list[Box]:
    """The frontal faces in ``photo`` as ``(left, top, width, height)`` fractions of it,
    largest first."""
    detector = _cascade()
    grey = photo.convert("L")
    scale = min(1.0, DETECT_LONG_SIDE / max(grey.size))
    if scale < 1.0:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.uint8)
    side = max(8, round(MIN_FACE * min(pixels.shape)))
    found = detector.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5,
                                      minSize=(side, side))
    w, h = grey.size
    boxes = [(float(x) / w, float(y) / h, float(bw) / w, float(bh) / h)
             for x, y, bw, bh in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])
