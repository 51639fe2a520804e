"""``brushwork batch``: many pictures, every photo with every painting or the rows of a
plan file, here or on a Ray cluster; one bar over all of them, a line as each finishes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from brushwork.batch import DONE, FAILED, Batch, BatchInterrupted, Row, paint
from brushwork.commands.options import add_settings_options, settings_from_args
from brushwork.errors import EXIT_ERROR, EXIT_INTERRUPTED, BrushworkError

HELP = "paint many pictures: every photo with every painting, or the rows of a plan file; " \
       "here or on a Ray cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--content", nargs="+", metavar="PATH", default=[],
                        help="photos: files or folders (every image in a folder)")
    parser.add_argument("--style", nargs="+", metavar="PATH", default=[],
                        help="paintings: files or folders; each photo is painted in each")
    parser.add_argument("--plan", metavar="FILE", help="a .csv or .jsonl file, one picture per "
                        "row: content, styles (';' between several in a CSV), output, and any "
                        "option below by name; instead of --content and --style")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for the pictures, index.json and sheet.png")
    parser.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                        help="paint on Ray (pip install 'brushwork[ray]'): a cluster started "
                        "here, or the one at ADDRESS (HOST:PORT, ray://HOST:PORT or auto)")
    parser.add_argument("--cpus-per-task", type=int, metavar="N",
                        help="with --ray: CPUs each picture asks for (default: all of the "
                        "smallest node's; on GPU nodes a picture takes one GPU and one CPU)")
    parser.add_argument("--force", action="store_true", help="paint again pictures that are "
                        "already there, and replace other existing files")
    parser.add_argument("--sheet", action="store_true", help="also write DIR/sheet.png, the "
                        "pictures with photos down and paintings across")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    add_settings_options(parser)


def run(args: argparse.Namespace) -> int:
    """`brushwork batch`: one bar over all the pictures, a line as each one finishes."""
    options = settings_from_args(args)
    if args.plan and (args.content or args.style):
        raise BrushworkError("give --plan, or --content and --style, not both")
    if not args.plan and not (args.content and args.style):
        raise BrushworkError("batch needs --content and --style (files or folders), "
                             "or --plan FILE")
    quiet = args.quiet
    bar: tqdm | None = None
    total = finished = 0
    share: dict[int, float] = {}  # the rows being painted: how much of each is done

    def say(message: str) -> None:
        if not quiet:
            (bar.write if bar is not None else print)(message, file=sys.stderr)

    def on_start(batch: Batch) -> None:
        nonlocal bar, total
        total = sum(row.state == "pending" for row in batch.rows)
        there = len(batch.rows) - total
        where = "on Ray" if args.ray is not None else "here"
        say(f"batch: {len(batch.rows)} pictures"
            + (f", {there} already in {args.output} with the same settings" if there else "")
            + f"; painting {total} {where}")
        if not quiet and total:
            bar = tqdm(total=total, unit="picture", file=sys.stderr, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")

    def progress(row: Row, done: float) -> None:
        share[row.number] = done
        if bar is not None:
            bar.update(finished + sum(share.values()) - bar.n)

    def on_row(row: Row) -> None:
        nonlocal finished
        finished += 1
        share.pop(row.number, None)
        if bar is not None:
            bar.update(finished + sum(share.values()) - bar.n)
        ran = row.ran_on or {}
        place = " ".join(str(ran[k]) for k in ("host", "device") if ran.get(k))
        if row.state == DONE:
            losses = "  ".join(f"{k} {v:.4g}" for k, v in (row.losses or {}).items())
            say(f"{finished}/{total} {row.output}: {row.elapsed:.1f} s on {place}  {losses}")
        else:
            say(f"{finished}/{total} {row.where}: failed: {row.error}")

    try:
        batch = paint(args.output, content=args.content, style=args.style, plan=args.plan,
                      ray=args.ray, cpus_per_task=args.cpus_per_task, force=args.force,
                      sheet=args.sheet, on_start=on_start, progress=progress, on_row=on_row,
                      log=say, **options)
    except BatchInterrupted as stop:
        if bar is not None:
            bar.close()
            bar = None
        counts = stop.batch.counts()
        print(f"interrupted: {counts.get(DONE, 0)} pictures painted, "
              f"{counts.get('pending', 0) + counts.get('interrupted', 0)} left; the same "
              f"command continues (index: {Path(args.output) / 'index.json'})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # during the check, or while joining the cluster
        print("interrupted before the first picture; nothing painted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    failed = [row for row in batch.rows if row.state == FAILED]
    if not quiet:
        counts = batch.counts()
        print(f"wrote {counts.get(DONE, 0)} pictures to {args.output}"
              + (f" ({counts.get('skipped', 0)} already there)" if counts.get("skipped") else "")
              + (f"; {len(failed)} failed" if failed else "")
              + "; index.json" + (" and sheet.png" if args.sheet else "") + " there",
              file=sys.stderr)
    return EXIT_ERROR if failed else 0  # the CLI's error status: a script sees that some failed
