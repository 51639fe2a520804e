"""Parameter sweeps: one picture per combination of values, laid out as a contact sheet.

The network and the style targets that cells share are made once (a shared
:class:`~brushwork.engine.Cache`), and every cell uses the same seed, so the cells
differ only in the swept values.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from brushwork.engine.cache import Cache
from brushwork.engine.network import check_layers
from brushwork.engine.painter import ImageInput, stylize
from brushwork.engine.result import Interrupted, Iterate, Result
from brushwork.engine.settings import Settings, json_options, to_cli_args
from brushwork.errors import BrushworkError, DivergedError
from brushwork.io.images import load_image
from brushwork.io.masks import load_masks
from brushwork.io.sheets import THUMB_LONG_SIDE, grid_sheet

# What a sweep may vary, in the order the sheet's labels use.
SWEEPABLE = ("strength", "style_weight", "content_weight", "tv_weight", "style_scale",
             "style_loss", "photoreal", "matting_weight", "style_layers", "content_layers",
             "model")
MAX_CELLS = 64


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]

    def label(self, value: Any) -> str:
        return f"{self.name.replace('_', ' ')} {format_value(self.name, value)}"


@dataclass
class Cell:
    row: int
    col: int
    values: dict[str, Any]  # the swept settings of this cell
    result: Result | None = None
    error: str | None = None  # why the cell has no picture (diverged, ...)
    path: Path | None = None  # where the CLI saved it
    command: str | None = None  # the `brushwork stylize` command that reproduces it

    def label(self) -> str:
        return ", ".join(Axis(name, ()).label(value) for name, value in self.values.items())


@dataclass
class SweepResult:
    columns: Axis
    rows: list[Axis]  # the row label combines these (their product, in order)
    cells: list[list[Cell]]
    options: dict[str, Any]  # the settings every cell shares (seed included)
    interrupted: bool = False
    title: str = ""

    def row_label(self, r: int) -> str:
        return "\n".join(a.label(self.cells[r][0].values[a.name]) for a in self.rows)

    def col_label(self, c: int) -> str:
        return self.columns.label(self.cells[0][c].values[self.columns.name])


def format_value(name: str, value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if name == "model" and (os.sep in str(value) or "." in str(value)):
        return Path(str(value)).name
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def make_axes(axes: Mapping[str, Sequence[Any]]) -> tuple[Axis, list[Axis]]:
    """Columns get the longest axis (a wide sheet reads best); rows the product of the rest."""
    for name, values in axes.items():
        if name not in SWEEPABLE:
            raise BrushworkError(f"cannot sweep {name!r}; sweepable: {', '.join(SWEEPABLE)}")
        if not values:
            raise BrushworkError(f"sweep of {name} has no values")
        if len(set(values)) != len(values):
            raise BrushworkError(f"sweep of {name} repeats a value: {list(values)}")
    ordered = [Axis(n, tuple(axes[n])) for n in SWEEPABLE if n in axes]
    if not ordered:
        raise BrushworkError("nothing to sweep: give two or more values to one of "
                             + ", ".join(SWEEPABLE))
    columns = max(ordered, key=lambda a: len(a.values))
    return columns, [a for a in ordered if a is not columns]


def sweep(content: ImageInput, style: ImageInput | Sequence[ImageInput],
          axes: Mapping[str, Sequence[Any]], *,
          callback: Callable[[Cell, Iterate], None] | None = None,
          on_cell: Callable[[Cell], None] | None = None, cache: Cache | None = None,
          log: Callable[[str], None] | None = None, **options: Any) -> SweepResult:
    """Run :func:`stylize` once per combination of ``axes`` values.

    ``axes`` maps a settings name (see SWEEPABLE) to its values; ``options`` are the
    settings all cells share. Every cell's settings are checked before any runs. A cell
    whose loss diverges is recorded with its error and the sweep goes on. ``on_cell`` is
    called as each cell finishes (to save it at once); Ctrl-C raises
    :class:`SweepInterrupted` carrying the cells done so far.
    """
    cache = cache or Cache()
    planned = plan(axes, **options)
    check_inputs(planned, content, style, cache, log)
    return paint(planned, content, style, cache, callback=callback, on_cell=on_cell, log=log)


def paint(planned: SweepResult, content: ImageInput, style: ImageInput | Sequence[ImageInput],
          cache: Cache, *, callback: Callable[[Cell, Iterate], None] | None = None,
          on_cell: Callable[[Cell], None] | None = None,
          log: Callable[[str], None] | None = None) -> SweepResult:
    """Paint the cells of a :func:`plan` whose inputs :func:`check_inputs` has passed."""
    out = planned
    for cell in all_cells(out):
        on_iterate = functools.partial(callback, cell) if callback else None
        try:
            cell.result = stylize(content, style, cache=cache, log=log, callback=on_iterate,
                                  **{**out.options, **cell.values})
        except DivergedError as e:
            cell.error = f"diverged: {e}"
        except Interrupted:
            out.interrupted = True
            raise SweepInterrupted(out) from None
        if on_cell is not None:
            on_cell(cell)
    return out


def plan(axes: Mapping[str, Sequence[Any]], **options: Any) -> SweepResult:
    """The sweep's grid with no picture yet; raises BrushworkError for any bad cell.

    Without a ``seed`` in ``options`` one is drawn, so all cells share it.
    """
    for name in axes:
        if name in options:
            raise BrushworkError(f"{name} is both swept and fixed; give it once")
    columns, rows = make_axes(axes)
    options = dict(options)
    if options.get("seed") is None:
        # One seed for all cells, so they differ only in what is swept.
        options["seed"] = random.SystemRandom().randrange(2**31)
    col_values = columns.values
    row_combos = list(itertools.product(*(a.values for a in rows))) or [()]
    if len(col_values) * len(row_combos) > MAX_CELLS:
        raise BrushworkError(f"the sweep has {len(col_values) * len(row_combos)} cells; "
                             f"at most {MAX_CELLS} fit on one sheet")
    cells = []
    for r, combo in enumerate(row_combos):
        row = []
        for c, cv in enumerate(col_values):
            values = {a.name: v for a, v in zip(rows, combo, strict=True)}
            values[columns.name] = cv
            Settings.from_options(options, **values)  # fail before any work
            row.append(Cell(r, c, values))
        cells.append(row)
    return SweepResult(columns, rows, cells, options)


def check_inputs(planned: SweepResult, content: ImageInput,
                 style: ImageInput | Sequence[ImageInput], cache: Cache,
                 log: Callable[[str], None] | None = None) -> None:
    """Fail before the first cell on what would fail in a later one: the images, every
    model (read once, into the cache) and its layers."""
    settings = Settings.from_options(planned.options)
    limit = settings.max_pixels
    photo = load_image(content, role="content", max_pixels=limit)
    styles: list[ImageInput] = list(style) if isinstance(style, (list, tuple)) else [style]
    for s in styles:
        load_image(s, role="style", max_pixels=limit)
    load_masks(settings, photo, len(styles))
    if settings.init not in ("content", "noise"):
        load_image(settings.init, role="init", max_pixels=limit)
    for cell in all_cells(planned):
        settings = Settings.from_options(planned.options, **cell.values)
        arch = cache.weights(settings.model, log).arch
        check_layers(arch, settings.content_layers, "content")
        check_layers(arch, settings.style_layers, "style")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``.result`` holds the cells that finished."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__("interrupted")
        self.result = result






def cell_command(content: str, styles: Sequence[str], output: str | os.PathLike,
                 options: dict[str, Any]) -> str:
    """The ``brushwork stylize`` command line that paints this cell on its own."""
    args = ["brushwork", "stylize", content, *styles, "-o", os.fspath(output)]
    return shlex.join(args + to_cli_args(options))


def cell_filename(cell: Cell) -> str:
    parts = [f"r{cell.row + 1}c{cell.col + 1}"]
    for name, value in cell.values.items():
        text = format_value(name, value).replace(",", "+")
        parts.append(f"{name}-{text}")
    name = "_".join(parts)
    safe = "".join(ch if ch.isalnum() or ch in "-+._" else "-" for ch in name)
    return safe[:120] + ".png"


def contact_sheet(result: SweepResult, *, thumb: int = THUMB_LONG_SIDE) -> Image.Image:
    """The cells in a grid with the column values on top and the row values on the left.

    Pictures are shown with a long side between MIN_THUMB and ``thumb`` (each cell's
    file keeps its full size); a column is as wide as its label needs.
    """
    return grid_sheet([[c.result.image if c.result else None for c in row] for row in result.cells],
                      [result.row_label(r) for r in range(len(result.cells))],
                      [result.col_label(c) for c in range(len(result.cells[0]))],
                      title=result.title,
                      notes=[[c.error for c in row] for row in result.cells], thumb=thumb)


def describe(result: SweepResult) -> dict[str, Any]:
    """JSON for the sheet's metadata and the cells' index."""
    return {
        "columns": {"name": result.columns.name, "values": list(result.columns.values)},
        "rows": [{"name": a.name, "values": list(a.values)} for a in result.rows],
        "options": json_options(result.options),
        "interrupted": result.interrupted,
        "cells": [{"row": c.row, "col": c.col, "values": json_options(c.values),
                   "file": str(c.path) if c.path else None, "command": c.command,
                   "losses": c.result.losses if c.result else None,
                   "elapsed_s": round(c.result.elapsed, 2) if c.result else None,
                   "error": c.error}
                  for row in result.cells for c in row],
    }


def all_cells(result: SweepResult) -> list[Cell]:
    return [c for row in result.cells for c in row]
