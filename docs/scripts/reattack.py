"""Try the outside review's attacks again on a real `brushwork studio` and on the CLI.

`python docs/scripts/reattack.py` from the repository root, with the default weights installed
(`make install`).  It starts a studio on 127.0.0.1:8799 with its data in a new temporary
folder, prints one line per attack (docs/security.md, "Tried again") and stops the
studio.  It takes about a minute; the job it paints is 64 px, 5 steps.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "studio"))
from test_uploads import many_scans_jpeg, zero_png

PORT = 8799
URL = f"http://127.0.0.1:{PORT}"
ENDED = ("done", "failed", "cancelled", "interrupted")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upload(client: httpx.Client, data: bytes, name: str) -> httpx.Response:
    return client.post("/api/upload", files={"file": (name, data, "application/octet-stream")})


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "PNG")
    return buf.getvalue()


def bombs(c: httpx.Client, pid: int) -> None:
    """Items 1, 2 and 5: decode bombs at once, a scan bomb, trailing data."""
    bomb = zero_png(5000)
    before, t = rss_mb(pid), time.time()
    with ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(lambda i: upload(httpx.Client(base_url=URL, timeout=120), bomb,
                                             f"z{i}.png").status_code, range(12)))
    print(f"1. 12 x {len(bomb) // 1024} kB all-zero 5000x5000 RGBA PNG at once: statuses "
          f"{sorted(set(codes))} in {time.time() - t:.1f} s; server RSS {before:.0f} -> "
          f"{rss_mb(pid):.0f} MB")
    scans = many_scans_jpeg(4096, 3000)
    waits: list[float] = []

    def poll() -> None:
        end = time.time() + 3
        while time.time() < end:
            t0 = time.time()
            httpx.get(URL + "/api/config", timeout=30)
            waits.append(time.time() - t0)
            time.sleep(0.1)

    th = threading.Thread(target=poll)
    th.start()
    t = time.time()
    r = upload(c, scans, "scans.jpg")
    th.join()
    print(f"2. {len(scans) // 1024} kB progressive JPEG of 3000 scans: {r.status_code} "
          f"{r.json().get('detail', 'stored')!r} in {time.time() - t:.1f} s; /api/config "
          f"meanwhile at most {max(waits) * 1000:.0f} ms")
    r = upload(c, png((200, 10, 10)) + bytes(24 * 2**20), "padded.png")
    print(f"5. 64x64 PNG followed by 24 MB of zeros: {r.status_code}, stored "
          f"{r.json().get('bytes')} bytes")


def requests(c: httpx.Client, data_dir: str) -> None:
    """Items 3, 7, 10 and 11: options, a model to fetch, huge numbers, deep JSON, paths."""
    photo = upload(c, png((200, 10, 10)), "photo.png").json()["id"]
    style = upload(c, png((10, 10, 200)), "style.png").json()["id"]
    for opts in ({"style_scale": 100}, {"history_size": 10**12}, {"seed": 2**100},
                 {"model": "vgg19"}, {"size": 4000}):
        r = c.post("/api/jobs", json={"content": photo, "styles": [style], "options": opts})
        print(f"3/7/10. options {opts}: {r.status_code} {r.json()['detail']!r}")
    r = c.get("/api/gallery", params={"offset": "99999999999999999999"})
    print(f"10. /api/gallery?offset=10**20: {r.status_code}")
    r = c.post("/api/jobs", content="[" * 20000 + "]" * 20000,
               headers={"content-type": "application/json"})
    print(f"10. JSON nested 20,000 deep: {r.status_code} {r.json()['detail']!r}")
    job = c.post("/api/jobs", json={"content": photo, "styles": [style],
                                    "options": {"size": 64, "iterations": 5}}).json()["id"]
    while c.get(f"/api/jobs/{job}").json()["state"] not in ENDED:
        time.sleep(1)
    settings = c.get(f"/api/jobs/{job}/settings").text
    picture = c.get(f"/api/jobs/{job}/result").content
    print(f"11. job {c.get(f'/api/jobs/{job}').json()['state']}; the data folder's path in "
          f"its settings: {data_dir in settings}, in its PNG: {data_dir.encode() in picture}")


def streams() -> None:
    """Item 4: hundreds of event streams from one address; then idle sockets."""
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n".encode())
        socks.append(s)
    time.sleep(2)
    answers: dict[str, int] = {}
    for s in socks:
        s.settimeout(2)
        try:
            head = s.recv(200).split(b"\r\n")[0].decode()
        except TimeoutError:
            head = "no answer"
        answers[head] = answers.get(head, 0) + 1
    t0 = time.time()
    code = httpx.get(URL + "/api/config", timeout=30).status_code
    print(f"4. 300 event streams from one address: {answers}; /api/config meanwhile {code} "
          f"in {(time.time() - t0) * 1000:.0f} ms")
    for s in socks:
        s.close()
    idle = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(600)]
    time.sleep(1)
    code = httpx.get(URL + "/api/config", timeout=30).status_code
    print(f"   600 idle sockets that send nothing: /api/config {code}")
    for s in idle:
        s.close()


def cli(work: str) -> None:
    """Items 6 and 12: an EPS named .jpg; outputs that are links."""
    os.chdir(work)
    Image.new("RGB", (64, 64), (1, 2, 3)).save("fake.jpg", "EPS")
    Image.new("RGB", (64, 64), (9, 9, 9)).save("ok.png")
    Path("notes.txt").write_text("precious")
    os.symlink("notes.txt", "to_text.png")
    os.symlink("gone/x.png", "dangling.png")
    for args in (["fake.jpg", "ok.png", "-o", "o.png"],
                 ["ok.png", "ok.png", "-o", "to_text.png", "--force"],
                 ["ok.png", "ok.png", "-o", "dangling.png"]):
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "brushwork", "stylize", *args],
                           capture_output=True, text=True)
        print(f"6/12. stylize {' '.join(args)}: exit {r.returncode} in {time.time() - t:.1f} s:"
              f" {r.stderr.strip()}")
    print(f"      notes.txt still reads {Path('notes.txt').read_text()!r}; the dangling "
          f"link's target created: {Path('gone/x.png').exists()}")


def main() -> None:
    work = tempfile.mkdtemp(prefix="brushwork-reattack-")
    data_dir = os.path.join(work, "data")
    server = subprocess.Popen([sys.executable, "-m", "brushwork", "studio", "--port",
                               str(PORT), "--data", data_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                httpx.get(URL + "/api/config", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        with httpx.Client(base_url=URL, timeout=120) as c:
            bombs(c, server.pid)
            requests(c, data_dir)
        streams()
    finally:
        server.terminate()
        server.wait(20)
    cli(work)


if __name__ == "__main__":
    main()
