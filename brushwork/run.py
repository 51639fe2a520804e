"""What `brushwork stylize` and `brushwork demo` do around the library call:
checks before the run, a progress bar, periodic prints and saves, Ctrl-C, the write."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from .engine import Interrupted, Iterate, pyramid, stylize
from .errors import BrushworkError
from .imageio import check_output_path, save_image
from .settings import Settings

EXIT_INTERRUPTED = 130


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:05d}{output.suffix}")


def run_stylize(content: Any, styles: Sequence[Any], args: argparse.Namespace,
                options: dict[str, Any]) -> int:
    settings = Settings(**options)  # validate before touching any file
    if args.print_every < 0 or args.save_every < 0:
        raise BrushworkError("--print-every and --save-every must be 0 or positive")
    output = check_output_path(args.output, force=args.force)
    quiet = args.quiet

    bar = None  # made at the first step, so an early error is one clean line

    def log(message: str) -> None:
        if not quiet:
            (bar.write if bar else print)(message, file=sys.stderr)

    def on_step(it: Iterate) -> None:
        nonlocal bar
        if bar is None and not quiet:
            bar = tqdm(total=100.0, unit="%", file=sys.stderr, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]")
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

    if args.save_every and not args.force:
        # Refuse up front rather than fail halfway through the run. The step count
        # depends only on the settings, not on the image.
        total = sum(it for _, it in pyramid(settings, (settings.size, settings.size)))
        for step in range(args.save_every, total + 1, args.save_every):
            path = snapshot_path(output, step)
            if path.exists():
                raise BrushworkError(f"snapshot {str(path)!r} exists; pass --force to overwrite")

    try:
        result = stylize(content, list(styles), callback=on_step, log=log, **options)
    except Interrupted as stop:
        if bar is not None:
            bar.close()
            bar = None
        if stop.result.history:
            path = stop.result.save(output, force=args.force)
            print(f"interrupted; wrote the picture so far to {path}", file=sys.stderr)
        else:
            print("interrupted before the first step; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    path = result.save(output, force=args.force)
    if not quiet:
        losses = "  ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        print(f"wrote {path} ({result.image.width}x{result.image.height}, "
              f"{result.elapsed:.1f} s, {losses})", file=sys.stderr)
    return 0
