"""``brushwork models``: the weight sources, which are present, and fetching one."""

from __future__ import annotations

import argparse

from brushwork.io import weights

HELP = "list weight sources, which are present; fetch one"
ONE_SHOT = False  # paints nothing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", metavar="NAME", help="download NAME into the cache")


def run(args: argparse.Namespace) -> int:
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
