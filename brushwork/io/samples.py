"""`brushwork demo`: paint a real photo offline, with a painting brushwork makes itself.

The photo is Grace Hopper's portrait that matplotlib ships as sample data. The style
image is drawn here, stroke by stroke, along a swirling flow field (night-sky blues and
yellows), so nothing is downloaded and no third-party artwork is involved.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from brushwork.errors import BrushworkError

SKY = [(24, 42, 102), (38, 70, 150), (62, 108, 182), (104, 150, 206), (150, 186, 220),
       (210, 214, 160)]
GLOW = [(238, 214, 92), (246, 232, 150), (226, 180, 60), (250, 244, 200)]
GROUND = [(20, 34, 40), (34, 58, 52), (58, 70, 44), (22, 26, 44), (90, 84, 52)]


def make_style_image(width: int = 640, height: int = 480, seed: int = 7) -> Image.Image:
    """A swirling night-sky painting made of a few thousand thick brush strokes."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), SKY[1])
    draw = ImageDraw.Draw(img)
    horizon = 0.72 * height
    # Vortices (x, y, strength, radius) that bend the wind into swirls.
    vortices = [(0.30 * width, 0.30 * height, 1.6, 0.16 * width),
                (0.62 * width, 0.22 * height, -1.2, 0.12 * width),
                (0.82 * width, 0.45 * height, 1.0, 0.09 * width)]
    stars = [(0.12 * width, 0.14 * height, 0.035 * width),
             (0.48 * width, 0.10 * height, 0.03 * width),
             (0.88 * width, 0.14 * height, 0.05 * width),
             (0.70 * width, 0.52 * height, 0.025 * width)]

    def angle(x: float, y: float) -> float:
        vx, vy = 1.0, 0.25 * math.sin(x / width * 9.0 + y / height * 4.0)
        for cx, cy, s, r in vortices:
            dx, dy = x - cx, y - cy
            d = math.hypot(dx, dy) + 1e-6
            k = s * math.exp(-(d / r) ** 2) * 3.0
            vx += -dy / d * k
            vy += dx / d * k
        if y > horizon:  # ground: short, mostly upward strokes (cypresses and hills)
            vx, vy = 0.4 * math.sin(x / 37.0), -1.0
        return math.atan2(vy, vx)

    def stroke(x: float, y: float, steps: int, length: float, width_px: int,
               colour: tuple[int, ...]) -> None:
        points = [(x, y)]
        for _ in range(steps):
            a = angle(x, y)
            x, y = x + length * math.cos(a), y + length * math.sin(a)
            points.append((x, y))
        draw.line(points, fill=colour, width=width_px, joint="curve")

    def jitter(colour: tuple[int, ...], amount: int = 18) -> tuple[int, ...]:
        return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)

    area = width * height
    for _ in range(int(area / 40)):
        x, y = rng.uniform(-20, width + 20), rng.uniform(-20, height + 20)
        if y > horizon:
            palette = GROUND
        else:
            near = min(math.hypot(x - sx, y - sy) / (sr * 3.0) for sx, sy, sr in stars)
            palette = GLOW if near < 1.0 and rng.random() < 0.8 else SKY
        stroke(x, y, int(rng.integers(4, 10)), float(rng.uniform(3, 6)),
               int(rng.integers(3, 8)), jitter(palette[rng.integers(len(palette))]))
    # Stars: bright cores with rings of short strokes around them.
    for sx, sy, sr in stars:
        for ring in np.linspace(sr * 1.8, sr * 0.2, 9):
            for t in np.linspace(0, 2 * math.pi, int(6 + ring / 2), endpoint=False):
                a = t + rng.uniform(-0.1, 0.1)
                p0 = (sx + ring * math.cos(a), sy + ring * math.sin(a))
                p1 = (sx + ring * math.cos(a + 0.5), sy + ring * math.sin(a + 0.5))
                draw.line([p0, p1], fill=jitter(GLOW[rng.integers(len(GLOW))]), width=4)
    # Dark outlines, as a painter's contour strokes.
    for _ in range(int(area / 900)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        stroke(x, y, int(rng.integers(6, 14)), 4.0, 2, jitter((16, 22, 48), 8))
    return img


def demo_photo() -> Path:
    """The portrait of Grace Hopper that matplotlib ships."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise BrushworkError(f"matplotlib's sample photo is missing ({path}); reinstall matplotlib")
    return path
