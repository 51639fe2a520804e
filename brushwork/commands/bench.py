"""``brushwork bench``: measure speed and memory on this machine and print the figures
(brushwork.bench does the measuring)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from brushwork.bench import measure, print_size
from brushwork.bench.measure import FULL, QUICK, compare_with, format_table
from brushwork.io.samples import demo_photo, make_style_image

HELP = "measure speed and memory (prints figures, never fails)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, each named in its key (< 3 min)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--model", default=None, metavar="NAME|PATH",
                        help="the weights to measure with (default: the default network)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for bench.json, the loss plot and both final pictures")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="instead of the full bench: one evaluation's time and peak "
                        "memory here against the brushwork checkout in DIR (say, a git "
                        "worktree of an earlier commit), in fresh processes, alternating")
    parser.add_argument("--print", action="store_true", dest="print_size",
                        help="instead of the full bench: print-size runs (512 to 2048 px) "
                        "against their estimates, and a 4096 px run's peak memory with a "
                        "full L-BFGS history (about 30 min on 2 CPU cores)")


def run(args: argparse.Namespace) -> int:
    if args.baseline is not None:
        sizes = QUICK.eval_sizes if args.quick else FULL.eval_sizes
        report = compare_with(args.baseline, sizes, args.device, model=args.model)
        print(json.dumps(report, indent=None if args.json else 2))
        return 0
    if args.print_size:
        with tempfile.TemporaryDirectory(prefix="brushwork-bench-") as tmp:
            style = Path(tmp) / "style.png"
            make_style_image().save(style)
            report = print_size.run(demo_photo(), style, args.device,
                                     print_size.QUICK if args.quick else print_size.FULL,
                                     args.model)
        print(json.dumps(report, indent=None if args.json else 2))
        return 0
    report = measure.run(args.quick, args.device, args.out, model=args.model)
    print(json.dumps(report) if args.json else format_table(report))
    return 0
