"""The coarse-to-fine schedule of a run: which scales it paints, and for how many steps.

Pure functions of the settings and the photo's size, so a caller can count a run's
steps (for a progress bar, a queue's estimate, a refusal before any work) without
running it.
"""

from __future__ import annotations

from dataclasses import dataclass

from brushwork.engine.settings import TILEABLE_MULTIPLE, Settings
from brushwork.io.images import scaled_size


@dataclass(frozen=True)
class Scale:
    """One level of the pyramid."""

    size: tuple[int, int]  # (width, height)
    iterations: int  # evaluations planned at this scale

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


def scales(settings: Settings, content_size: tuple[int, int]) -> list[Scale]:
    """The scales from coarsest to finest.

    Each level halves the long side until the next would fall under ``min_size``.
    Coarse levels cost a quarter of the next per evaluation, so they get twice
    the iterations: most of the picture is settled where it is cheap.
    """
    longs = [settings.size]
    min_size = settings.knob("min_size")
    use = settings.multiscale == "on" or (
        settings.multiscale == "auto" and settings.size >= 2 * min_size)
    if use:
        while longs[0] // 2 >= min_size:
            longs.insert(0, longs[0] // 2)
    last = len(longs) - 1
    sized = (tileable_size if settings.tileable else lambda size: size)
    return [Scale(sized(scaled_size(content_size, long_side)),
                  settings.iterations * (2 if i < last else 1))
            for i, long_side in enumerate(longs)]


def tileable_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` (width, height) with each side rounded to the nearest multiple (halves up) of
    :data:`TILEABLE_MULTIPLE` (at least one), as a tileable picture's must be."""
    m = TILEABLE_MULTIPLE
    return (max(m, (size[0] + m // 2) // m * m), max(m, (size[1] + m // 2) // m * m))


def count_steps(settings: Settings, content_size: tuple[int, int]) -> int:
    """How many evaluations a run with ``settings`` on a photo of ``content_size``
    (width, height) plans, over all scales (early stopping may end it sooner)."""
    return sum(s.iterations for s in scales(settings, content_size))
