"""What a run hands back: progress after each step, the finished picture, an interruption."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from brushwork._version import __version__
from brushwork.io.images import save_image, to_image


@dataclass
class Iterate:
    """What a callback receives after every evaluation of the objective."""

    step: int  # evaluations so far, over all scales
    total: int  # evaluations planned, over all scales
    scale: int  # pyramid level, 0 = coarsest
    scales: int
    size: tuple[int, int]  # (width, height) at this scale
    losses: dict[str, float]  # weighted terms: content, style, tv, total
    elapsed: float  # seconds since the run started
    progress: float  # fraction of the run's work done, weighting each step by its pixels
    _pixels: torch.Tensor = field(repr=False)

    def image(self) -> Image.Image:
        """The current picture (converted only when asked for)."""
        return to_image(self._pixels)


@dataclass
class Result:
    image: Image.Image
    settings: dict[str, Any]
    losses: dict[str, float]
    history: list[dict[str, float]]
    elapsed: float
    inputs: dict[str, Any]
    device: str
    interrupted: bool = False
    # The network's arithmetic as resolved on this device (settings["precision"] may be
    # "auto"): "fp32" or "bf16".
    precision: str = "fp32"
    # The optimised picture, (1, 3, H, W) in 0..255, before any colour transfer: what a
    # later run continues from (brushwork.video warps it into the next frame).
    pixels: torch.Tensor | None = field(default=None, repr=False)
    # The finished picture (colour transfer included) in 0..255 as float, kept only for a
    # 16-bit file (settings["bit_depth"]): ``image`` is it rounded to 8 bits.
    deep: torch.Tensor | None = field(default=None, repr=False)

    def metadata(self) -> dict[str, Any]:
        """Everything needed to reproduce the picture; stored inside the saved file."""
        return {"brushwork": __version__, "inputs": self.inputs, "settings": self.settings,
                "device": self.device, "precision": self.precision,
                "final_losses": self.losses,
                "elapsed_s": round(self.elapsed, 2), "interrupted": self.interrupted}

    def save(self, path: str | os.PathLike, *, force: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
        """Write atomically, refusing to overwrite unless ``force``; settings go in the file,
        with ``extra`` (for example the command that reproduces the picture), at the
        settings' bit depth and dpi."""
        bit_depth = int(self.settings.get("bit_depth", 8))
        picture = self.deep if bit_depth == 16 and self.deep is not None else self.image
        return save_image(picture, path, force=force, bit_depth=bit_depth,
                          dpi=self.settings.get("dpi"),
                          metadata={**self.metadata(), **(extra or {})})


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``.result`` holds the picture so far."""

    def __init__(self, result: Result) -> None:
        super().__init__("interrupted")
        self.result = result
