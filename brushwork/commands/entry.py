"""``brushwork``: parse the command line, run the subcommand, turn a user's mistake into
one line on stderr and a non-zero exit (no traceback)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from brushwork.commands.parser import build_parser
from brushwork.engine.memory.allocator import reuse_freed_memory
from brushwork.errors import EXIT_ERROR, EXIT_USAGE, BrushworkError, out_of_memory


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.one_shot:
        # Each evaluation frees and reallocates the same blocks: keep them until the
        # command exits (brushwork.engine.memory.allocator).  Not for the studio, a
        # long-running server that would then never give its peak back
        # (docs/benchmarks.md, "The studio's memory").
        reuse_freed_memory()
    try:
        return int(args.func(args))
    except BrushworkError as e:
        print(f"brushwork: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, RuntimeError) as e:
        oom = out_of_memory(e)
        if oom is None:
            raise
        print(f"brushwork: error: {oom}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
