"""``brushwork sweep``: one picture per combination of option values, each saved as it
finishes, then the labelled contact sheet, index.json, commands.sh and the loss plots."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from brushwork.commands.options import add_settings_options, list_of, settings_from_args
from brushwork.commands.stylize import progress_bar
from brushwork.engine.cache import Cache
from brushwork.engine.result import Iterate
from brushwork.engine.settings import Settings, option_specs
from brushwork.errors import EXIT_INTERRUPTED, BrushworkError
from brushwork.io.images import check_output_dir, check_output_path, save_image, save_text
from brushwork.sweep import (
    SWEEPABLE,
    Cell,
    SweepInterrupted,
    SweepResult,
    all_cells,
    cell_command,
    cell_filename,
    check_inputs,
    contact_sheet,
    describe,
    paint,
    plan,
)

HELP = "paint one picture per combination of option values and lay them out as a labelled " \
       "contact sheet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("content", help="the photo")
    parser.add_argument("style", nargs="+", help="one or more paintings")
    parser.add_argument("-o", "--output", required=True, help="the contact sheet (.png)")
    parser.add_argument("--cells", metavar="DIR", help="folder for each cell's picture, "
                        "index.json and commands.sh (default: OUTPUT's name + _cells)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    parser.add_argument("--plot", metavar="PATH", help="also write the cells' loss plots, laid "
                        "out like the sheet, to PATH (.png)")
    add_settings_options(parser, sweepable=SWEEPABLE)


def run(args: argparse.Namespace) -> int:
    try:
        axes, fixed = sweep_values(args, SWEEPABLE)
    except argparse.ArgumentTypeError as e:
        raise BrushworkError(str(e)) from None
    options = {k: v for k, v in settings_from_args(args).items() if k not in SWEEPABLE}
    return run_sweep(args, axes, {**options, **fixed})


def sweep_values(args: argparse.Namespace, names: Sequence[str]) -> tuple[dict, dict]:
    """Split the sweepable flags into (axes with several values, options with one)."""
    specs = {spec.name: spec for spec in option_specs()}
    axes: dict[str, list] = {}
    fixed: dict[str, Any] = {}
    for name in names:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        flag = specs[name].flag
        values: list[Any] = []
        for text in raw:
            if specs[name].kind == "float":
                values += list(list_of(float, "numbers")(text)) or _no_value(flag)
            elif specs[name].kind in ("strs", "floats"):  # each occurrence is one list
                values.append(list_of(str, "layer names")(text) or _no_value(flag))
            else:
                values += list(list_of(str, "values")(text)) or _no_value(flag)
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            axes[name] = values
    return axes, fixed


def _no_value(flag: str) -> list:
    raise BrushworkError(f"{flag} was given without a value")


@dataclass
class _Files:
    """Where a sweep writes, every path checked before any picture is painted."""

    sheet: Path
    plot: Path | None
    cells: Path  # as the user named it, for the commands in commands.sh
    cells_dir: Path  # checked (links followed)

    @classmethod
    def check(cls, args: argparse.Namespace) -> _Files:
        sheet = check_output_path(args.output, force=args.force, metadata=True)
        plot = check_output_path(args.plot, force=args.force) if args.plot else None
        if plot == sheet:
            raise BrushworkError("--plot must name another file than --output")
        cells = Path(args.cells) if args.cells else Path(args.output).with_name(
            Path(args.output).stem + "_cells")
        return cls(sheet, plot, cells, check_output_dir(cells, force=args.force))


class _Progress:
    """One bar over the whole sweep, and a line as each cell is saved."""

    def __init__(self, args: argparse.Namespace, files: _Files, options: dict[str, Any],
                 cells: int) -> None:
        self.args, self.files, self.options, self.cells = args, files, options, cells
        self.bar: tqdm | None = None
        self.done = 0

    def on_step(self, cell: Cell, it: Iterate) -> None:
        if self.args.quiet:
            return
        if self.bar is None:
            self.bar = progress_bar()
        self.bar.set_description(f"cell {self.done + 1}/{self.cells}", refresh=False)
        self.bar.set_postfix_str(f"step {it.step}/{it.total} style {it.losses['style']:.3g}",
                                 refresh=False)
        self.bar.update(100.0 * (self.done + it.progress) / self.cells - self.bar.n)

    def on_cell(self, cell: Cell) -> None:
        """Save the finished cell with the command that paints it on its own."""
        self.done += 1
        args, label = self.args, cell.label()
        if cell.result is None:
            message = f"cell {self.done}/{self.cells} ({label}): {cell.error}"
        else:
            self.files.cells_dir.mkdir(parents=True, exist_ok=True)
            path = self.files.cells / cell_filename(cell)
            cell.command = cell_command(args.content, args.style, path,
                                        {**self.options, **cell.values})
            cell.path = cell.result.save(path, force=args.force,
                                         extra={"command": cell.command, "cwd": os.getcwd()})
            message = f"cell {self.done}/{self.cells} ({label}): {path}, " \
                      f"{cell.result.elapsed:.1f} s"
        if not args.quiet:
            (self.bar.write if self.bar else print)(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_sweep(args: argparse.Namespace, axes: dict[str, list], options: dict[str, Any]) -> int:
    """`brushwork sweep`: every cell saved as it finishes, then the sheet, index and plot."""
    cache = Cache()
    planned = plan(axes, **options)  # every cell's settings checked before any file is touched
    check_inputs(planned, args.content, list(args.style), cache)
    options = planned.options  # with the shared seed
    files = _Files.check(args)
    progress = _Progress(args, files, options, len(all_cells(planned)))
    try:
        result = paint(planned, args.content, list(args.style), cache,
                       callback=progress.on_step, on_cell=progress.on_cell)
    except SweepInterrupted as stop:
        progress.close()
        if any(c.result for c in all_cells(stop.result)):
            _write_sheet(args, files, options, stop.result)
            print(f"interrupted; wrote the {progress.done} finished cells to {files.sheet}",
                  file=sys.stderr)
        else:
            print("interrupted before the first cell finished; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    _write_sheet(args, files, options, result)
    if not args.quiet:
        print(f"wrote {files.sheet} ({progress.cells} cells; pictures, index.json and "
              f"commands.sh in {files.cells})", file=sys.stderr)
    return 0


def _write_sheet(args: argparse.Namespace, files: _Files, options: dict[str, Any],
                 result: SweepResult) -> None:
    """The contact sheet, index.json, commands.sh and (with --plot) the loss plots."""
    names = ", ".join(Path(s).name for s in args.style)
    size = options.get("size", Settings().size)
    result.title = (f"{Path(args.content).name} in the style of {names}: {size} px, "
                    f"seed {options['seed']}" + (" (interrupted)" if result.interrupted else ""))
    info = describe(result)
    files.cells_dir.mkdir(parents=True, exist_ok=True)
    save_text(json.dumps(info, indent=1) + "\n", files.cells_dir / "index.json",
              force=args.force)
    save_text(_commands_script(args, result), files.cells_dir / "commands.sh", force=args.force)
    save_image(contact_sheet(result), files.sheet, force=args.force,
               metadata={"brushwork_sweep": info})
    if files.plot:
        from brushwork.io.plots import grid_plot

        histories = [[c.result.history if c.result else None for c in row]
                     for row in result.cells]
        rows = [result.row_label(r).replace("\n", ", ") for r in range(len(result.cells))]
        columns = [result.col_label(c) for c in range(len(result.cells[0]))]
        save_image(grid_plot(histories, rows, columns), files.plot, force=args.force)


def _commands_script(args: argparse.Namespace, result: SweepResult) -> str:
    lines = ["#!/bin/sh", "# brushwork sweep: each command paints one cell of "
             f"{Path(args.output).name} on its own.", f"cd {shlex.quote(os.getcwd())}"]
    for cell in all_cells(result):
        if cell.command:
            lines += [f"# row {cell.row + 1}, column {cell.col + 1}", cell.command]
    return "\n".join(lines) + "\n"
