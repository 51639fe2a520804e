"""The figures of docs/batch.md: one real batch painted by the local backend and through
Ray on this machine, in the same run, and what a Ray task costs on top of the picture.

    python docs/scripts/batch_scaling.py                    # 4 photos x 2 paintings at 256 px
    python docs/scripts/batch_scaling.py --photos 2 --paintings 1 --size 128   # a quick look

Prints the wall time of each run and their ratios, whether the pictures are the same
pixel for pixel, the round trip of a task that does nothing and of one that carries a
photo in and a picture out, what the driver spends per picture (writing it and the
index), and from these the time expected for a large batch on N machines like this one.
Needs Ray (pip install 'brushwork[ray]') and ../shared/images (or --images).
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brushwork import batch
from brushwork.batch import Batch, Row

HERE = Path(__file__).resolve().parent.parent  # docs/
IMAGES = HERE.parent.parent / "shared" / "images"


def wall(step: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = step()
    return out, time.perf_counter() - start


def round_trip(ray: Any, task: Any, *args: Any, n: int = 50) -> float:
    """Seconds from submitting one task to holding its result, one at a time (median)."""
    ray.get(task.remote(*args))  # a worker started and the function exported
    times = []
    for _ in range(n):
        start = time.perf_counter()
        ray.get(task.remote(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def noop() -> None:
    return None


def carry(data: bytes, size: int) -> Image.Image:
    """What a picture's task moves: a photo file in, a finished picture out."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").resize((size, size * 3 // 4))


def driver_cost(painted: Batch, rows: int) -> tuple[float, float]:
    """Seconds the driver spends per picture: writing one picture with its settings, and
    rewriting an index of ``rows`` rows."""
    row = next(r for r in painted.rows if r.state == "done")
    picture = Image.open(painted.path_of(row)).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        from brushwork.io.images import read_metadata, save_image

        meta = read_metadata(painted.path_of(row))
        start = time.perf_counter()
        for i in range(20):
            save_image(picture, Path(tmp) / f"p{i}.png", metadata=meta)
        write = (time.perf_counter() - start) / 20
        big = Batch([Row(i, row.where, row.content, row.styles, f"{i}.png", state="done",
                         losses=row.losses, elapsed=row.elapsed, ran_on=row.ran_on)
                     for i in range(rows)], Path(tmp), painted.options, "grid")
        start = time.perf_counter()
        for _ in range(5):
            batch.write_index(big)
        index = (time.perf_counter() - start) / 5
    return write, index


def same_pictures(a: Batch, b: Batch) -> bool:
    return all(np.array_equal(np.asarray(Image.open(a.path_of(x))),
                              np.asarray(Image.open(b.path_of(y))))
               for x, y in zip(a.rows, b.rows, strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, default=IMAGES)
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--paintings", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, help="final-scale steps (default: stylize's); "
                   "fewer only to try the script out")
    p.add_argument("--one-cpu-tasks", action="store_true", help="also run --ray "
                   "--cpus-per-task 1 (several pictures at once, one thread each)")
    p.add_argument("--out", type=Path, default=Path("out/batch_scaling"))
    p.add_argument("--sheet", type=Path, help="also copy the local run's sheet.png here")
    args = p.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("needs Ray: pip install 'brushwork[ray]'", file=sys.stderr)
        return 1
    photos = sorted((args.images / "content").glob("*.jpg"))[:args.photos]
    paintings = sorted((args.images / "style").glob("*.jpg"))[:args.paintings]
    if len(photos) < args.photos or len(paintings) < args.paintings:
        print(f"not enough images in {args.images}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"size": args.size, "seed": 1}
    if args.iterations:
        options["iterations"] = args.iterations
    n = len(photos) * len(paintings)
    print(f"{len(photos)} photos x {len(paintings)} paintings = {n} pictures at {args.size} px: "
          + ", ".join(f.stem for f in photos) + " x " + ", ".join(f.stem for f in paintings))

    def paint(name: str, **extra: Any) -> tuple[Batch, float]:
        done: Batch
        done, seconds = wall(lambda: batch.paint(args.out / name, content=[str(f) for f in photos],
                                                 style=[str(f) for f in paintings], force=True,
                                                 sheet=name == "local", **options, **extra))
        failed = [r.error for r in done.rows if r.state != "done"]
        if failed:
            raise SystemExit(f"{name}: {failed}")
        return done, seconds

    local, t_local = paint("local")
    per_picture = statistics.mean(r.elapsed or 0.0 for r in local.rows)
    _, t_init = wall(lambda: ray.init(include_dashboard=False, log_to_driver=False,
                                      logging_level=logging.WARNING))
    cpus = int(ray.cluster_resources().get("CPU", 0))
    on_ray, t_ray = paint("ray", ray=True)
    on_ray_1, t_ray_1 = paint("ray_1cpu", ray=True, cpus_per_task=1) if args.one_cpu_tasks \
        else (None, 0.0)
    rt_noop = round_trip(ray, ray.remote(noop))
    photo_bytes = photos[0].read_bytes()
    rt_carry = round_trip(ray, ray.remote(carry), ray.put(photo_bytes), args.size)
    ray.shutdown()
    write, index = driver_cost(local, 1500)

    print(f"\nthis machine: {cpus} CPUs; Ray started in {t_init:.1f} s")
    print(f"{'run':<40} {'wall s':>8} {'per picture s':>14} {'vs local':>9}")
    print(f"{'local backend (one at a time)':<40} {t_local:8.1f} {t_local / n:14.2f} {1:9.3f}")
    print(f"{'--ray, tasks of ' + str(cpus) + ' CPUs (the default)':<40} {t_ray:8.1f} "
          f"{t_ray / n:14.2f} {t_ray / t_local:9.3f}")
    if on_ray_1 is not None:
        print(f"{'--ray --cpus-per-task 1':<40} {t_ray_1:8.1f} {t_ray_1 / n:14.2f} "
              f"{t_ray_1 / t_local:9.3f}")
    print(f"painting alone (stylize's time, mean): {per_picture:.2f} s a picture here, "
          f"{statistics.mean(r.elapsed or 0.0 for r in on_ray.rows):.2f} s in the Ray tasks")
    print(f"same pictures pixel for pixel, local vs --ray: {same_pictures(local, on_ray)}"
          + (f"; local vs --cpus-per-task 1 (one thread each): "
             f"{same_pictures(local, on_ray_1)}" if on_ray_1 is not None else ""))
    print(f"\nRay task round trip, one at a time: no-op {rt_noop * 1e3:.2f} ms; a photo "
          f"({len(photo_bytes) / 1e6:.2f} MB) in and a {args.size} px picture out "
          f"{rt_carry * 1e3:.2f} ms")
    print(f"driver per picture: writing it {write * 1e3:.1f} ms; rewriting a 1500-row "
          f"index.json {index * 1e3:.1f} ms")

    # On paper: P pictures on N machines like this one, each painting one picture at a
    # time: T(N) = S + max(ceil(P / N) * (t + o), P * w), where t is the picture's cost,
    # o the task's round trip, S the start (the check, Ray's workers starting and reading
    # the network) and w the driver's own time per picture (receiving and writing it; the
    # index is rewritten at most once a second, so its cost per picture is that of one
    # rewrite times the pictures arriving per second, or one rewrite a second).
    # t: the median picture of both runs (a first run on a machine also measures the
    # device once, a few minutes on a busy one); S: what the Ray run spent besides its
    # pictures (it paints one at a time with the default tasks).
    t = statistics.median([r.elapsed or 0.0 for r in (*local.rows, *on_ray.rows)])
    o = rt_carry
    start = max(0.0, t_ray - sum(r.elapsed or 0.0 for r in on_ray.rows) - n * o)
    p_total = 1500
    print(f"\nexpected wall time for P = {p_total} pictures ({args.size} px), t = {t:.2f} s, "
          f"o = {o * 1e3:.1f} ms, S = {start:.1f} s, w = {write * 1e3:.1f} ms + index:")
    print(f"{'machines N':>10} {'wall':>10} {'speed-up':>9} {'driver busy':>12}")
    one = p_total * (t + o) + start
    for machines in (1, 2, 4, 8, 16, 64, 256, 1024):
        rate = machines / (t + o)  # pictures arriving per second
        busy = rate * write + min(1.0, rate) * index
        total = start + max(math.ceil(p_total / machines) * (t + o),
                            p_total * (write + index / max(1.0, rate)))
        print(f"{machines:10d} {total / 3600:8.2f} h {one / total:9.1f} {busy:11.0%}")
    print(f"the driver saturates near N = {(t + o) * (1 - index) / write:.0f} machines "
          f"(writing pictures)")
    if args.sheet:
        args.sheet.write_bytes((args.out / "local" / batch.SHEET).read_bytes())
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
