"""What several commands share on the command line: the style-transfer options (one flag
per :class:`~brushwork.engine.settings.Settings` field, derived from the schema), the
flags of a single run, and the parser that reports a usage mistake in one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from brushwork.engine.settings import OptionSpec, option_specs, parse_list
from brushwork.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def list_of(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple]:
    """A flag's parser for a comma-separated list of ``kind``; argparse's error otherwise."""
    def parse(text: str) -> tuple:
        try:
            return parse_list(text, kind)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}") from None
    return parse


# An option's kind (brushwork.engine.settings.OptionSpec) -> the parser of its flag's value.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "str": str,
    "strs": list_of(str, "layer names"), "floats": list_of(float, "numbers"),
}


def cli_options() -> list[OptionSpec]:
    return [spec for spec in option_specs() if spec.cli]


def _fmt_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def add_settings_options(parser: argparse.ArgumentParser,
                         overrides: dict[str, Any] | None = None,
                         sweepable: tuple[str, ...] = (),
                         skip: tuple[str, ...] = ()) -> None:
    """One option per Settings field, with its default (or the command's own) in the help.

    Fields in ``sweepable`` take several values (kept as raw strings; see
    brushwork.commands.sweep.sweep_values); fields in ``skip`` get no flag (those that
    make no sense for the command, a texture's photo options).
    """
    overrides = overrides or {}
    group = parser.add_argument_group("style transfer options")
    for spec in cli_options():
        if spec.name in skip:
            continue
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
            if spec.bare is not None:  # the flag alone means one of its choices
                kwargs.update(nargs="?", const=spec.bare, metavar=spec.metavar)
        elif spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _PARSERS[spec.kind]
            kwargs["metavar"] = spec.metavar
        group.add_argument(spec.flag, **kwargs)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user gave; the rest keep Settings' defaults."""
    return {spec.name: getattr(args, spec.name) for spec in cli_options()
            if hasattr(args, spec.name)}


def add_run_options(p: argparse.ArgumentParser, default_output: str | None) -> None:
    """The flags of one painted picture (stylize, demo): output, progress, resume, estimate."""
    if default_output is None:
        # Required unless --estimate (checked by brushwork.commands.stylize).
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
