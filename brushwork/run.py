"""What `brushwork stylize` and `brushwork demo` do around the library call:
checks before the run, a progress bar, periodic prints and saves, Ctrl-C, the write."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .checkpoint import path_for as checkpoint_path
from .engine import Interrupted, Iterate, Result, estimate, stylize
from .errors import BrushworkError
from .imageio import (
    check_output_dir,
    check_output_path,
    check_side_file,
    save_image,
    save_text,
)
from .pyramid import count_steps
from .settings import Settings

EXIT_INTERRUPTED = 130


def progress_bar(initial: float = 0.0) -> tqdm:
    """0-100 %, made at the first step so that an early error stays one clean line;
    ``initial``: the share already done then (a resumed run's), which is not this
    process's rate."""
    return tqdm(total=100.0, initial=initial, unit="%", file=sys.stderr, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]")


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:05d}{output.suffix}")


def run_stylize(content: Any, styles: Sequence[Any], args: argparse.Namespace,
                options: dict[str, Any]) -> int:
    settings = Settings(**options)  # validate before touching any file
    if args.estimate:
        return print_estimate(content, styles, options)
    if args.print_every < 0 or args.save_every < 0:
        raise BrushworkError("--print-every and --save-every must be 0 or positive")
    if not args.checkpoint_every >= 0:  # NaN too
        raise BrushworkError("--checkpoint-every must be 0 or a positive number of minutes")
    # Resuming finishes the files an interrupted run wrote so far: it may replace them.
    overwrite = args.force or args.resume
    # Every file the run may write is checked here, links followed, before any network
    # is loaded: the picture and its settings sidecar, the checkpoint, snapshots, the plot.
    output = check_output_path(args.output, force=overwrite, metadata=True)
    checkpoint = check_side_file(checkpoint_path(output), "checkpoint", force=True)
    if checkpoint.exists() and not (args.resume or args.force):
        raise BrushworkError(f"an unfinished run's checkpoint is at '{checkpoint}': pass "
                             f"--resume to continue it, or --force to start over")
    plot = check_output_path(args.plot, force=overwrite) if args.plot else None
    if plot == output:
        raise BrushworkError("--plot must name another file than --output")
    quiet = args.quiet

    bar = None  # made at the first step, so an early error is one clean line

    def log(message: str) -> None:
        if not quiet:
            (bar.write if bar else print)(message, file=sys.stderr)

    def on_step(it: Iterate) -> None:
        nonlocal bar
        if bar is None and not quiet:
            bar = progress_bar(100.0 * it.progress)
        if bar is not None:
            bar.set_description(f"scale {it.scale + 1}/{it.scales} {it.size[0]}x{it.size[1]}",
                                refresh=False)
            bar.set_postfix_str(f"step {it.step}/{it.total} style {it.losses['style']:.3g} "
                                f"content {it.losses['content']:.3g}", refresh=False)
            bar.update(100.0 * it.progress - bar.n)
        if args.print_every and it.step % args.print_every == 0:
            log(f"step {it.step:5d}  " + "  ".join(f"{k} {v:.4g}" for k, v in it.losses.items()))
        if args.save_every and it.step % args.save_every == 0:
            path = snapshot_path(output, it.step)
            save_image(it.image(), path, force=True)

    if args.save_every:
        # Refuse up front rather than fail halfway through the run. The step count
        # depends only on the settings, not on the image.
        total = count_steps(settings, (settings.size, settings.size))
        for step in range(args.save_every, total + 1, args.save_every):
            check_output_path(snapshot_path(output, step), force=overwrite,
                              role="snapshot")

    try:
        result = stylize(content, list(styles), callback=on_step, log=log,
                         checkpoint=checkpoint, checkpoint_every=60 * args.checkpoint_every,
                         resume=args.resume, **options)
    except Interrupted as stop:
        if bar is not None:
            bar.close()
            bar = None
        if stop.result.history:
            path = stop.result.save(output, force=overwrite)
            print(f"interrupted; wrote the picture so far to {path}", file=sys.stderr)
            if checkpoint.exists():
                print(f"the same command with --resume continues it from {checkpoint}",
                      file=sys.stderr)
            if plot:
                write_plot(stop.result, plot, overwrite)
        else:
            print("interrupted before the first step; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    path = result.save(output, force=overwrite)
    if plot:
        write_plot(result, plot, overwrite)
        if not quiet:
            print(f"wrote {plot}", file=sys.stderr)
    if not quiet:
        losses = "  ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        print(f"wrote {path} ({result.image.width}x{result.image.height}, "
              f"{result.elapsed:.1f} s, {losses})", file=sys.stderr)
    return 0


def print_estimate(content: Any, styles: Sequence[Any], options: dict[str, Any]) -> int:
    """``--estimate``: the prediction and the plan per scale, on stdout; nothing written."""
    forecast = estimate(content, list(styles), **options)
    print(forecast.describe())
    for level, p in enumerate(forecast.scales, 1):
        how = f"tiles of {p.tile} px" if p.tile is not None else "whole"
        print(f"  scale {level}/{len(forecast.scales)}: {p.scale.size[0]}x{p.scale.size[1]}, "
              f"{p.scale.iterations} steps, {how}, L-BFGS history {p.history}")
    return 0


def write_plot(result: Result, path: Path, force: bool) -> None:
    from .plot import loss_plot

    size = f"{result.image.width}x{result.image.height}"
    title = f"{Path(str(result.inputs['content'])).name}, {size}"
    save_image(loss_plot(result.history, title=title), path, force=force)


def run_sweep(args: argparse.Namespace, axes: dict[str, list], options: dict[str, Any]) -> int:
    """`brushwork sweep`: every cell saved as it finishes, then the sheet, index and plot."""
    from .engine import Cache
    from .sweep import (
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

    cache = Cache()
    planned = plan(axes, **options)  # every cell's settings checked before any file is touched
    check_inputs(planned, args.content, list(args.style), cache)
    options = planned.options  # with the shared seed
    n = len(all_cells(planned))
    output = check_output_path(args.output, force=args.force, metadata=True)
    plot = check_output_path(args.plot, force=args.force) if args.plot else None
    if plot == output:
        raise BrushworkError("--plot must name another file than --output")
    cells_arg = Path(args.cells) if args.cells else Path(args.output).with_name(
        Path(args.output).stem + "_cells")
    cells_dir = check_output_dir(cells_arg, force=args.force)
    quiet = args.quiet
    bar = None
    done = 0

    def on_step(cell: Any, it: Iterate) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = progress_bar()
        bar.set_description(f"cell {done + 1}/{n}", refresh=False)
        bar.set_postfix_str(f"step {it.step}/{it.total} style {it.losses['style']:.3g}",
                            refresh=False)
        bar.update(100.0 * (done + it.progress) / n - bar.n)

    def on_cell(cell: Any) -> None:
        nonlocal done
        done += 1
        label = cell.label()
        if cell.result is None:
            message = f"cell {done}/{n} ({label}): {cell.error}"
        else:
            cells_dir.mkdir(parents=True, exist_ok=True)
            path = cells_arg / cell_filename(cell)
            cell.command = cell_command(args.content, args.style, path,
                                        {**options, **cell.values})
            cell.path = cell.result.save(path, force=args.force,
                                         extra={"command": cell.command, "cwd": os.getcwd()})
            message = f"cell {done}/{n} ({label}): {path}, {cell.result.elapsed:.1f} s"
        if not quiet:
            (bar.write if bar else print)(message, file=sys.stderr)

    def finish(result: SweepResult) -> None:
        names = ", ".join(Path(s).name for s in args.style)
        size = options.get("size", Settings().size)
        result.title = (f"{Path(args.content).name} in the style of {names}: {size} px, "
                        f"seed {options['seed']}"
                        + (" (interrupted)" if result.interrupted else ""))
        info = describe(result)
        cells_dir.mkdir(parents=True, exist_ok=True)
        save_text(json.dumps(info, indent=1) + "\n", cells_dir / "index.json", force=args.force)
        lines = ["#!/bin/sh", "# brushwork sweep: each command paints one cell of "
                 f"{Path(args.output).name} on its own.", f"cd {shlex.quote(os.getcwd())}"]
        for cell in all_cells(result):
            if cell.command:
                lines += [f"# row {cell.row + 1}, column {cell.col + 1}", cell.command]
        save_text("\n".join(lines) + "\n", cells_dir / "commands.sh", force=args.force)
        save_image(contact_sheet(result), output, force=args.force,
                   metadata={"brushwork_sweep": info})
        if plot:
            from .plot import grid_plot

            histories = [[c.result.history if c.result else None for c in row]
                         for row in result.cells]
            save_image(grid_plot(histories, [result.row_label(r).replace("\n", ", ")
                                            for r in range(len(result.cells))],
                                [result.col_label(c) for c in range(len(result.cells[0]))]),
                      plot, force=args.force)

    try:
        result = paint(planned, args.content, list(args.style), cache, callback=on_step,
                       on_cell=on_cell)
    except SweepInterrupted as stop:
        if bar is not None:
            bar.close()
            bar = None
        if any(c.result for c in all_cells(stop.result)):
            finish(stop.result)
            print(f"interrupted; wrote the {done} finished cells to {output}", file=sys.stderr)
        else:
            print("interrupted before the first cell finished; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    finish(result)
    if not quiet:
        print(f"wrote {output} ({n} cells; pictures, index.json and commands.sh in {cells_arg})",
              file=sys.stderr)
    return 0


def run_batch(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """`brushwork batch`: one bar over all the pictures, a line as each one finishes."""
    from .batch import DONE, FAILED, Batch, BatchInterrupted, Row, paint

    if args.plan and (args.content or args.style):
        raise BrushworkError("give --plan, or --content and --style, not both")
    if not args.plan and not (args.content and args.style):
        raise BrushworkError("batch needs --content and --style (files or folders), "
                             "or --plan FILE")
    quiet = args.quiet
    bar: tqdm | None = None
    total = finished = 0
    share: dict[int, float] = {}  # the rows being painted: how much of each is done

    def say(message: str) -> None:
        if not quiet:
            (bar.write if bar is not None else print)(message, file=sys.stderr)

    def on_start(batch: Batch) -> None:
        nonlocal bar, total
        total = sum(row.state == "pending" for row in batch.rows)
        there = len(batch.rows) - total
        where = "on Ray" if args.ray is not None else "here"
        say(f"batch: {len(batch.rows)} pictures"
            + (f", {there} already in {args.output} with the same settings" if there else "")
            + f"; painting {total} {where}")
        if not quiet and total:
            bar = tqdm(total=total, unit="picture", file=sys.stderr, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")

    def progress(row: Row, done: float) -> None:
        share[row.number] = done
        if bar is not None:
            bar.update(finished + sum(share.values()) - bar.n)

    def on_row(row: Row) -> None:
        nonlocal finished
        finished += 1
        share.pop(row.number, None)
        if bar is not None:
            bar.update(finished + sum(share.values()) - bar.n)
        ran = row.ran_on or {}
        place = " ".join(str(ran[k]) for k in ("host", "device") if ran.get(k))
        if row.state == DONE:
            losses = "  ".join(f"{k} {v:.4g}" for k, v in (row.losses or {}).items())
            say(f"{finished}/{total} {row.output}: {row.elapsed:.1f} s on {place}  {losses}")
        else:
            say(f"{finished}/{total} {row.where}: failed: {row.error}")

    try:
        batch = paint(args.output, content=args.content, style=args.style, plan=args.plan,
                      ray=args.ray, cpus_per_task=args.cpus_per_task, force=args.force,
                      sheet=args.sheet, on_start=on_start, progress=progress, on_row=on_row,
                      log=say, **options)
    except BatchInterrupted as stop:
        if bar is not None:
            bar.close()
            bar = None
        counts = stop.batch.counts()
        print(f"interrupted: {counts.get(DONE, 0)} pictures painted, "
              f"{counts.get('pending', 0) + counts.get('interrupted', 0)} left; the same "
              f"command continues (index: {Path(args.output) / 'index.json'})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # during the check, or while joining the cluster
        print("interrupted before the first picture; nothing painted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    failed = [row for row in batch.rows if row.state == FAILED]
    if not quiet:
        counts = batch.counts()
        print(f"wrote {counts.get(DONE, 0)} pictures to {args.output}"
              + (f" ({counts.get('skipped', 0)} already there)" if counts.get("skipped") else "")
              + (f"; {len(failed)} failed" if failed else "")
              + "; index.json" + (" and sheet.png" if args.sheet else "") + " there",
              file=sys.stderr)
    return 1 if failed else 0  # the CLI's error status: a script sees that some failed
