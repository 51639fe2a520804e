"""The `brushwork` command: a thin layer over :func:`brushwork.stylize`.

Its options and their defaults come from :class:`brushwork.settings.Settings`.
User mistakes print one line on stderr and exit 1; no tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .allocator import reuse_freed_memory
from .errors import BrushworkError, out_of_memory
from .settings import OptionSpec, option_specs

EXIT_ERROR = 1
EXIT_USAGE = 2
# The demo paints a smaller picture than stylize's default, to finish in a few minutes.
DEMO_OVERRIDES = {"size": 320}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _list_of(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}") from None
    return parse


# An option's kind (brushwork.settings.OptionSpec) -> the parser of its flag's value.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "str": str,
    "strs": _list_of(str, "layer names"), "floats": _list_of(float, "numbers"),
}


def _cli_options() -> list[OptionSpec]:
    return [spec for spec in option_specs() if spec.cli]


def _fmt_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def add_settings_options(parser: argparse.ArgumentParser,
                         overrides: dict[str, Any] | None = None,
                         sweepable: tuple[str, ...] = ()) -> None:
    """One option per Settings field, with its default (or the command's own) in the help.

    Fields in ``sweepable`` take several values (kept as raw strings; see sweep_values).
    """
    overrides = overrides or {}
    group = parser.add_argument_group("style transfer options")
    for spec in _cli_options():
        default = overrides.get(spec.name, spec.default)
        # argparse's default formatter would repeat a default it can see; a literal one is
        # written for the suppressed ones (the user did not pass them: Settings decides).
        shown = "%(default)s" if spec.name in overrides else (
            spec.shown if default is None and spec.shown else _fmt_default(default))
        help_text = f"{spec.help} (default: {shown})"
        kwargs: dict[str, Any] = {"dest": spec.name, "help": help_text,
                                  "default": overrides.get(spec.name, argparse.SUPPRESS)}
        if spec.name in sweepable:
            kwargs["action"] = "append"
            kwargs["metavar"] = "V,V,..." if spec.name != "model" else "NAME,..."
            kwargs["help"] = help_text + (
                "; repeat the flag for each layer set to sweep" if spec.name.endswith("layers")
                else "; comma-separated values to sweep")
        elif spec.choices:
            kwargs["choices"] = spec.choices
        elif spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _PARSERS[spec.kind]
            kwargs["metavar"] = spec.metavar
        group.add_argument(spec.flag, **kwargs)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user gave; the rest keep Settings' defaults."""
    return {spec.name: getattr(args, spec.name) for spec in _cli_options()
            if hasattr(args, spec.name)}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brushwork",
                     description="Neural style transfer (Gatys et al.): paint a photo in the "
                                 "style of a painting.")
    parser.add_argument("--version", action="version", version=f"brushwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    st = sub.add_parser("stylize", help="paint CONTENT in the style of one or more STYLE images",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    st.add_argument("content", help="the photo")
    st.add_argument("style", nargs="+", help="one or more paintings (blended by --style-weights)")
    _add_run_options(st, default_output=None)
    add_settings_options(st)
    st.set_defaults(func=cmd_stylize)

    demo = sub.add_parser("demo", help="paint a photo that ships with matplotlib, offline",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_run_options(demo, default_output="out/demo.png")
    add_settings_options(demo, overrides=DEMO_OVERRIDES)
    demo.set_defaults(func=cmd_demo)

    sw = sub.add_parser("sweep", help="paint one picture per combination of option values "
                        "and lay them out as a labelled contact sheet",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sw.add_argument("content", help="the photo")
    sw.add_argument("style", nargs="+", help="one or more paintings")
    sw.add_argument("-o", "--output", required=True, help="the contact sheet (.png)")
    sw.add_argument("--cells", metavar="DIR", help="folder for each cell's picture, index.json "
                    "and commands.sh (default: OUTPUT's name + _cells)")
    sw.add_argument("--force", action="store_true", help="overwrite existing output files")
    sw.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    sw.add_argument("--plot", metavar="PATH", help="also write the cells' loss plots, laid out "
                    "like the sheet, to PATH (.png)")
    from .sweep import SWEEPABLE

    add_settings_options(sw, sweepable=SWEEPABLE)
    sw.set_defaults(func=cmd_sweep)

    vid = sub.add_parser(
        "video", help="paint a video (MP4 or PNG frames) in the style of one or more STYLE "
        "images, without flicker (Ruder et al. 2016); needs brushwork[video]",
        description="Paint INPUT frame by frame; each frame after the first starts from the "
        "previous painting carried along the optical flow (--init prev-warped) and is held "
        "to the earlier paintings by a temporal loss where the motion is reliable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    vid.add_argument("input", help="the video (anything FFmpeg reads)")
    vid.add_argument("style", nargs="+", help="one or more paintings (blended by --style-weights)")
    vid.add_argument("-o", "--output", required=True,
                     help="OUT.mp4 (.mov, .mkv; H.264 with the input's audio), or a folder for "
                     "numbered PNG frames")
    vid.add_argument("--force", action="store_true", help="overwrite existing output files")
    vid.add_argument("--resume", action="store_true",
                     help="continue an unfinished run into the same OUTPUT after its last "
                     "finished frame (same options and inputs)")
    vid.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    from .video.command import add_video_options

    add_video_options(vid)
    add_settings_options(vid, overrides={"init": "prev-warped"})
    vid.set_defaults(func=cmd_video)
    ba = sub.add_parser("batch", help="paint many pictures: every photo with every painting, or "
                        "the rows of a plan file; here or on a Ray cluster",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ba.add_argument("--content", nargs="+", metavar="PATH", default=[],
                    help="photos: files or folders (every image in a folder)")
    ba.add_argument("--style", nargs="+", metavar="PATH", default=[],
                    help="paintings: files or folders; each photo is painted in each")
    ba.add_argument("--plan", metavar="FILE", help="a .csv or .jsonl file, one picture per row: "
                    "content, styles (';' between several in a CSV), output, and any option "
                    "below by name; instead of --content and --style")
    ba.add_argument("-o", "--output", required=True, metavar="DIR",
                    help="folder for the pictures, index.json and sheet.png")
    ba.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                    help="paint on Ray (pip install 'brushwork[ray]'): a cluster started here, "
                    "or the one at ADDRESS (HOST:PORT, ray://HOST:PORT or auto)")
    ba.add_argument("--cpus-per-task", type=int, metavar="N",
                    help="with --ray: CPUs each picture asks for (default: all of the smallest "
                    "node's; on GPU nodes a picture takes one GPU and one CPU)")
    ba.add_argument("--force", action="store_true", help="paint again pictures that are "
                    "already there, and replace other existing files")
    ba.add_argument("--sheet", action="store_true", help="also write DIR/sheet.png, the "
                    "pictures with photos down and paintings across")
    ba.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    add_settings_options(ba)
    ba.set_defaults(func=cmd_batch)

    bench = sub.add_parser("bench", help="measure speed and memory (prints figures, never fails)")
    from .bench import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    models = sub.add_parser("models", help="list weight sources, which are present; fetch one")
    models.add_argument("--fetch", metavar="NAME", help="download NAME into the cache")
    models.set_defaults(func=cmd_models)
    from .studio import add_parser as add_studio_parser  # the web studio (brushwork/studio/)
    add_studio_parser(sub)
    return parser


def _add_run_options(p: argparse.ArgumentParser, default_output: str | None) -> None:
    if default_output is None:
        # Required unless --estimate (checked by cmd_stylize).
        p.add_argument("-o", "--output", help="output image (.png keeps settings inside); "
                       "required unless --estimate")
    else:
        p.add_argument("-o", "--output", default=default_output, help="output image")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--print-every", type=int, default=0, metavar="N",
                   help="print the losses every N steps (0: only the progress bar)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save the picture every N steps as OUTPUT_stepNNNNN.ext")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.add_argument("--plot", metavar="PATH", help="also write a plot of the losses against "
                   "the evaluation (content, style, TV, total) to PATH (.png)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is beside OUTPUT "
                   "(OUTPUT.checkpoint), after a stop, a kill or a crash; the same options and "
                   "images are needed")
    p.add_argument("--checkpoint-every", type=float, default=5.0, metavar="MIN",
                   help="save the run's state beside OUTPUT every MIN minutes (and on Ctrl-C), "
                   "for --resume; 0: only on Ctrl-C")
    p.add_argument("--estimate", action="store_true",
                   help="print the run's predicted peak memory and wall time on this device, "
                   "and which scales it paints in tiles, then exit without painting")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.func in ONE_SHOT:
        # Each evaluation frees and reallocates the same blocks: keep them until the
        # command exits (brushwork.allocator).  Not for the studio, a long-running server
        # that would then never give its peak back (docs/benchmarks.md, "The studio's
        # memory").
        reuse_freed_memory()
    try:
        return args.func(args)
    except BrushworkError as e:
        print(f"brushwork: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, RuntimeError) as e:
        oom = out_of_memory(e)
        if oom is None:
            raise
        print(f"brushwork: error: {oom}", file=sys.stderr)
        return EXIT_ERROR


def cmd_stylize(args: argparse.Namespace) -> int:
    from .run import run_stylize

    if args.output is None and not args.estimate:
        print("brushwork stylize: error: the following arguments are required: -o/--output "
              "(see --help)", file=sys.stderr)
        return EXIT_USAGE
    return run_stylize(args.content, args.style, args, settings_from_args(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args, settings_from_args(args))


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
                values += list(_list_of(float, "numbers")(text)) or _no_value(flag)
            elif specs[name].kind in ("strs", "floats"):  # each occurrence is one list
                values.append(_list_of(str, "layer names")(text) or _no_value(flag))
            else:
                values += [v.strip() for v in text.split(",") if v.strip()] or _no_value(flag)
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            axes[name] = values
    return axes, fixed


def _no_value(flag: str) -> list:
    raise BrushworkError(f"{flag} was given without a value")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .run import run_sweep
    from .sweep import SWEEPABLE

    try:
        axes, fixed = sweep_values(args, SWEEPABLE)
    except argparse.ArgumentTypeError as e:
        raise BrushworkError(str(e)) from None
    options = {k: v for k, v in settings_from_args(args).items() if k not in SWEEPABLE}
    return run_sweep(args, axes, {**options, **fixed})


def cmd_video(args: argparse.Namespace) -> int:
    from .video.command import run_video

    return run_video(args, settings_from_args(args))
def cmd_batch(args: argparse.Namespace) -> int:
    from .run import run_batch

    return run_batch(args, settings_from_args(args))


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_cli

    return run_cli(args)


def cmd_models(args: argparse.Namespace) -> int:
    from . import weights

    if args.fetch:
        path = weights.fetch(args.fetch)
        print(f"{args.fetch}: {path}")
        return 0
    rows = weights.sources_status()
    for row in rows:
        mark = "present" if row["present"] else "absent"
        print(f"{row['name']:<12} {row['arch']:<6} {row['preprocess']:<6} {mark:<8} "
              f"{row['path'] or row['url']}")
        print(f"{'':<12} {row['description']}")
    print(f"\ncache: {weights.cache_dir()}  (fetch one: brushwork models --fetch NAME; "
          "or pass any .pth/.safetensors/.h5 file to --model)")
    return 0


# The painting commands, which run and exit: they keep freed memory for reuse.
ONE_SHOT = (cmd_stylize, cmd_demo, cmd_sweep, cmd_video, cmd_batch, cmd_bench)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
