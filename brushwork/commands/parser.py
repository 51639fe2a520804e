"""The ``brushwork`` command line in one place: every subcommand, in the order ``--help``
lists them, each declared by its own module (``add_arguments`` and ``run``)."""

from __future__ import annotations

import argparse
from types import ModuleType

from brushwork._version import __version__
from brushwork.commands import (
    batch,
    bench,
    demo,
    models,
    studio,
    stylize,
    sweep,
    texture,
    video,
)
from brushwork.commands.options import Parser

# name -> the module that declares and runs it.  Each module has HELP (one line for
# `brushwork --help`), add_arguments(parser) and run(args) -> exit status; DESCRIPTION
# optionally, for the subcommand's own --help.
COMMANDS: dict[str, ModuleType] = {
    "stylize": stylize, "texture": texture, "demo": demo, "sweep": sweep, "video": video,
    "batch": batch, "bench": bench, "models": models, "studio": studio,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="brushwork",
                    description="Neural style transfer (Gatys et al.): paint a photo in the "
                                "style of a painting.")
    parser.add_argument("--version", action="version", version=f"brushwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP,
                                 description=getattr(module, "DESCRIPTION", None),
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(func=module.run, one_shot=getattr(module, "ONE_SHOT", True))
    return parser
