"""``brushwork demo``: paint matplotlib's portrait of Grace Hopper in the style of a
painting made on the spot, offline (brushwork.io.samples)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brushwork.commands.options import add_run_options, add_settings_options, settings_from_args
from brushwork.commands.stylize import run_stylize
from brushwork.io.images import check_output_path, save_image
from brushwork.io.samples import demo_photo, make_style_image

HELP = "paint a photo that ships with matplotlib, offline"
# The demo paints a smaller picture than stylize's default, to finish in a few minutes.
OVERRIDES = {"size": 320}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_output="out/demo.png")
    add_settings_options(parser, overrides=OVERRIDES)


def run(args: argparse.Namespace) -> int:
    options = settings_from_args(args)
    if args.estimate:
        return run_stylize(demo_photo(), [make_style_image()], args, options)
    # The demo makes its own output folder (out/ by default); stylize does not guess.
    Path(args.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
    again = args.force or args.resume  # resuming finishes the files of the run it continues
    output = check_output_path(args.output, force=again)
    style_path = output.with_name(f"{output.stem}_style.png")
    check_output_path(style_path, force=again)
    save_image(make_style_image(), style_path, force=again)
    if not args.quiet:
        print(f"demo: painting {demo_photo()} in the style of {style_path}", file=sys.stderr)
    return run_stylize(demo_photo(), [style_path], args, options)
