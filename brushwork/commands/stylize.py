"""``brushwork stylize``: what the command does around the library call: checks before the
run, a progress bar, periodic prints and saves, Ctrl-C, the write (``brushwork demo``
paints through the same :func:`run_stylize`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from brushwork.commands.options import add_run_options, add_settings_options, settings_from_args
from brushwork.engine.memory.forecast import Estimate
from brushwork.engine.painter import estimate, stylize
from brushwork.engine.pyramid import count_steps
from brushwork.engine.result import Interrupted, Iterate, Result
from brushwork.engine.settings import Settings
from brushwork.errors import EXIT_INTERRUPTED, EXIT_USAGE, BrushworkError
from brushwork.io.checkpoint import path_for as checkpoint_path
from brushwork.io.images import (
    check_output_path,
    check_side_file,
    save_image,
)

HELP = "paint CONTENT in the style of one or more STYLE images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("content", help="the photo")
    parser.add_argument("style", nargs="+",
                        help="one or more paintings (blended by --style-weights)")
    add_run_options(parser, default_output=None)
    add_settings_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.output is None and not args.estimate:
        print("brushwork stylize: error: the following arguments are required: -o/--output "
              "(see --help)", file=sys.stderr)
        return EXIT_USAGE
    return run_stylize(args.content, args.style, args, settings_from_args(args))


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
    """Paint ``content`` in ``styles`` as ``args`` (add_run_options's flags) ask."""
    return run_painting(lambda **run: stylize(content, list(styles), **run, **options),
                        lambda: estimate(content, list(styles), **options), args, options)


# A painting run given its callback, log, checkpoint, checkpoint_every and resume.
Paint = Callable[..., Result]


def run_painting(paint: Paint, forecast: Callable[[], Estimate], args: argparse.Namespace,
                 options: dict[str, Any]) -> int:
    """One picture painted as ``args`` ask (``--estimate`` prints ``forecast()``
    instead), with a progress bar, snapshots, a checkpoint, Ctrl-C and an atomic write:
    what ``brushwork stylize``, ``demo`` and ``texture`` share.  ``options``: the run's
    settings, checked before any file is touched."""
    settings = Settings(**options)  # validate before touching any file
    if args.estimate:
        return print_estimate(forecast())
    if args.print_every < 0 or args.save_every < 0:
        raise BrushworkError("--print-every and --save-every must be 0 or positive")
    if not args.checkpoint_every >= 0:  # NaN too
        raise BrushworkError("--checkpoint-every must be 0 or a positive number of minutes")
    # Resuming finishes the files an interrupted run wrote so far: it may replace them.
    overwrite = args.force or args.resume
    output, checkpoint, plot = _check_files(args, overwrite, settings.bit_depth)
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
        result = paint(callback=on_step, log=log, checkpoint=checkpoint,
                       checkpoint_every=60 * args.checkpoint_every, resume=args.resume)
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


def _check_files(args: argparse.Namespace, overwrite: bool, bit_depth: int
                 ) -> tuple[Path, Path, Path | None]:
    """Every file the run may write, checked (links followed) before any network is
    loaded: the picture (in a format holding ``bit_depth``) and its settings sidecar, the
    checkpoint and the plot."""
    output = check_output_path(args.output, force=overwrite, metadata=True,
                               bit_depth=bit_depth)
    checkpoint = check_side_file(checkpoint_path(output), "checkpoint", force=True)
    if checkpoint.exists() and not (args.resume or args.force):
        raise BrushworkError(f"an unfinished run's checkpoint is at '{checkpoint}': pass "
                             f"--resume to continue it, or --force to start over")
    plot = check_output_path(args.plot, force=overwrite) if args.plot else None
    if plot == output:
        raise BrushworkError("--plot must name another file than --output")
    return output, checkpoint, plot


def print_estimate(forecast: Estimate) -> int:
    """``--estimate``: the prediction and the plan per scale, on stdout; nothing written."""
    print(forecast.describe())
    for level, p in enumerate(forecast.scales, 1):
        how = f"tiles of {p.tile} px" if p.tile is not None else "whole"
        print(f"  scale {level}/{len(forecast.scales)}: {p.scale.size[0]}x{p.scale.size[1]}, "
              f"{p.scale.iterations} steps, {how}, L-BFGS history {p.history}")
    return 0


def write_plot(result: Result, path: Path, force: bool) -> None:
    from brushwork.io.plots import loss_plot

    size = f"{result.image.width}x{result.image.height}"
    subject = result.inputs.get("content")
    title = f"{Path(str(subject)).name if subject is not None else 'texture'}, {size}"
    save_image(loss_plot(result.history, title=title), path, force=force)
