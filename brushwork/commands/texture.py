"""``brushwork texture``: a texture of one or more paintings, from noise, of any size
(brushwork.engine.texture); with ``--tileable`` one that repeats with no seam.  The run
around it (progress, snapshots, checkpoint, Ctrl-C, the write) is ``stylize``'s."""

from __future__ import annotations

import argparse
import re
import sys

from brushwork.commands.options import add_run_options, add_settings_options, settings_from_args
from brushwork.commands.stylize import run_painting
from brushwork.engine.texture import PHOTO_OPTIONS, estimate_texture, texture, texture_size
from brushwork.errors import EXIT_USAGE
from brushwork.maths.strength import DEFAULT_STRENGTH, knobs

HELP = "paint a texture (a material, a background, a wallpaper) in the style of STYLE"
DESCRIPTION = (
    "Gatys et al.'s texture synthesis: the style loss alone, from seeded noise, coarse to "
    "fine; large sizes are painted in tiles within the memory budget. With --tileable the "
    "texture repeats with no seam. The photo's options of `brushwork stylize` do not apply.")


def parse_size(text: str) -> tuple[int, int]:
    """``W`` (a square) or ``WxH``, in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected W or WxH in pixels, got {text!r}")
    w = int(match[1])
    return w, int(match[2]) if match[2] else w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("style", nargs="+",
                        help="one or more paintings (blended by --style-weights)")
    parser.add_argument("--size", dest="texture_size", type=parse_size, default=(512, 512),
                        metavar="W[xH]", help="the texture's size in pixels: W for a square, "
                        "or WxH (tileable: each side rounded to a multiple of 16)")
    add_run_options(parser, default_output=None)
    # The coarsest scale the default strength gives a painting, stated: a texture has no
    # strength.
    coarsest = knobs(DEFAULT_STRENGTH)["min_size"]
    add_settings_options(parser, overrides={"init": "noise", "min_size": coarsest},
                         skip=("size", *PHOTO_OPTIONS))


def run(args: argparse.Namespace) -> int:
    if args.output is None and not args.estimate:
        print("brushwork texture: error: the following arguments are required: -o/--output "
              "(see --help)", file=sys.stderr)
        return EXIT_USAGE
    options = settings_from_args(args)
    size = texture_size(args.texture_size)  # refused before any file is touched
    checked = {**options, "size": max(size), "content_weight": 0.0}
    return run_painting(lambda **run: texture(args.style, size, **run, **options),
                        lambda: estimate_texture(size, **options), args, checked)
