"""The ``brushwork`` command line: one module per subcommand, the parser in
:mod:`~brushwork.commands.parser`, the entry point :func:`main`.  The top layer: nothing
in brushwork imports it."""

from brushwork.commands.entry import main

__all__ = ["main"]
