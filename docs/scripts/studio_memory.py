"""The studio's memory: its resident size at the peak of its jobs and after them, with
glibc malloc's defaults and with :func:`brushwork.reuse_freed_memory`.

    python docs/scripts/studio_memory.py                 # 2 jobs at 256 px, default network
    python docs/scripts/studio_memory.py --size 512 --jobs 3 --iterations 60

Each mode runs in a fresh process (the allocator setting is process-wide): it starts the
studio (``create_app`` on a temporary data folder, the default network, a shared cache,
as ``brushwork studio`` does), uploads the demo's photo and painting through the HTTP
API, runs the jobs one after another on the studio's worker thread, waits ``--idle``
seconds, and reads /proc/self/status (VmRSS now, VmHWM the peak).  Linux only.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE = "http://127.0.0.1:8000"
MODES = ("malloc_default", "reuse_freed_memory")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def measure(mode: str, size: int, jobs: int, iterations: int, idle: float) -> dict[str, Any]:
    """One studio in this process: RSS figures in MB around ``jobs`` jobs."""
    from fastapi.testclient import TestClient

    import brushwork
    from brushwork.engine.cache import Cache
    from brushwork.io.samples import demo_photo, make_style_image
    from brushwork.studio.app import create_app

    if mode == "reuse_freed_memory" and not brushwork.reuse_freed_memory():
        raise SystemExit("reuse_freed_memory has no effect here (not Linux with glibc)")
    out: dict[str, Any] = {"mode": mode, "size": size, "jobs": jobs, "iterations": iterations}
    with tempfile.TemporaryDirectory() as data:
        app = create_app(data, cache=Cache(), log=lambda m: None)
        with TestClient(app, base_url=BASE) as client:
            out["rss_started_mb"] = _status_mb("VmRSS")
            ids = []
            for name, blob in (("photo.png", demo_photo().read_bytes()),
                               ("painting.png", _png(make_style_image()))):
                r = client.post("/api/upload", files={"file": (name, blob, "image/png")})
                r.raise_for_status()
                ids.append(r.json()["id"])
            after_job = []
            start = time.monotonic()
            for _ in range(jobs):
                r = client.post("/api/jobs", json={"content": ids[0], "styles": [ids[1]],
                                                   "options": {"size": size, "seed": 1,
                                                               "iterations": iterations}})
                r.raise_for_status()
                job_id = r.json()["id"]
                while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in (
                        "queued", "running"):
                    time.sleep(0.2)
                if job["state"] != "done":
                    raise SystemExit(f"job ended {job['state']}: {job['error']}")
                after_job.append(round(_status_mb("VmRSS")))
            out["seconds"] = round(time.monotonic() - start, 1)
            time.sleep(idle)
            out["rss_after_each_job_mb"] = after_job
            out["rss_idle_mb"] = round(_status_mb("VmRSS"))
            out["peak_rss_mb"] = round(_status_mb("VmHWM"))
            out["rss_started_mb"] = round(out["rss_started_mb"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--idle", type=float, default=2.0, help="seconds to wait after the jobs")
    p.add_argument("--mode", choices=MODES, help="measure this mode in this process")
    args = p.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.size, args.jobs, args.iterations, args.idle)))
        return
    for mode in MODES:
        argv = [sys.executable, __file__, "--mode", mode, "--size", str(args.size),
                "--jobs", str(args.jobs), "--iterations", str(args.iterations),
                "--idle", str(args.idle)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{mode}: {done.stderr.strip().splitlines()[-1:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode:<20} started {row['rss_started_mb']} MB, peak {row['peak_rss_mb']} MB, "
              f"after each job {row['rss_after_each_job_mb']} MB, idle "
              f"{row['rss_idle_mb']} MB ({row['seconds']} s of jobs)")


if __name__ == "__main__":
    main()
