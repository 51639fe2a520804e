"""The Ray backend of ``brushwork batch``: one task per picture on a Ray cluster.

Ray is optional (``pip install 'brushwork[ray]'``) and imported only here, only when
asked for.  Each task asks for the CPUs (or the GPU) one picture needs.  The inputs
travel through Ray's object store as the files' bytes (each file put once, whatever
the number of rows using it), and the finished picture comes back to the driver, which
writes it: the workers need not share a disk with it.  A worker process keeps the
networks it has read in a module-level :class:`~brushwork.engine.cache.Cache`, so each is read
once per worker; a task whose worker died is run again, up to RETRIES times.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from brushwork.batch.painting import Outcome, Progress
from brushwork.batch.plan import RUNNING, Batch, PlanError, Row
from brushwork.engine.cache import Cache
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, out_of_memory

RETRIES = 3
INSTALL = "pip install 'brushwork[ray]'"
CONNECT_TIMEOUT_S = 5.0
# Options naming a file that the worker must read: shipped as bytes too.
FILE_OPTIONS = ("model", "init")


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BrushworkError(f"--ray needs Ray, which is not installed here; install it "
                             f"with: {INSTALL}") from None
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """The host and port to try before joining ``address``; None for ``auto`` and
    ``local``, which Ray looks up on this machine itself."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BrushworkError(f"Ray address {address!r} must be HOST:PORT, ray://HOST:PORT "
                             "or auto")
    return host.strip("[]"), int(port)


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once, in one line, when nothing answers at ``address`` (Ray itself would
    retry for a minute before saying so)."""
    where = parse_address(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise BrushworkError(f"cannot reach the Ray cluster at {address} ({reason})") from None


class RayBackend:
    """Paints a batch's rows as Ray tasks (see the module's description)."""

    def __init__(self, address: str | None = None, *, cpus_per_task: int | None = None,
                 retries: int = RETRIES, init_options: dict[str, Any] | None = None) -> None:
        # address None: a Ray cluster started here (and stopped by close()), unless this
        # process has already joined one (ray.init before), which is then used as it is.
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.retries = retries
        self.init_options = init_options or {}
        self._ray: Any = None
        self._started = False
        self._cpus = 0  # CPUs per task, once the cluster is known
        self._gpus = 0.0  # GPUs in the cluster
        self._slots = 1  # how many tasks the cluster runs at once
        self._nodes = 0

    def connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = require_ray()
        if self.address:
            probe(self.address)
        if not ray.is_initialized():
            quiet = {"include_dashboard": False, "log_to_driver": False,
                     "logging_level": logging.WARNING}
            if self.address:
                try:
                    ray.init(address=self.address, **{**quiet, **self.init_options})
                except Exception as e:  # ConnectionError, RuntimeError, ... : one line
                    raise BrushworkError(f"cannot join the Ray cluster at {self.address} "
                                         f"({_one_line(e)})") from None
            else:
                ray.init(**{**quiet, **self.init_options})
                self._started = True
        self._ray = ray
        return ray

    def close(self) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._started = None, False

    def describe(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address or "a cluster started here",
                "nodes": self._nodes, "cpus_per_task": self._cpus, "gpus": self._gpus,
                "tasks_at_once": self._slots, "retries": self.retries}

    def check(self, batch: Batch, rows: Sequence[Row]) -> list[str]:
        """The cluster is reachable and can run these rows' tasks (a task asking for more
        than any node has would wait for ever)."""
        if self.cpus_per_task is not None and (isinstance(self.cpus_per_task, bool)
                                               or self.cpus_per_task < 1):
            return [f"cpus per task must be a positive integer, not {self.cpus_per_task!r}"]
        try:
            ray = self.connect()
        except BrushworkError as e:
            return [str(e)]
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        cpus = [int(n.get("CPU", 0)) for n in nodes if n.get("CPU", 0) >= 1]
        if not cpus:
            return ["the Ray cluster has no node with a CPU"]
        self._nodes = len(nodes)
        self._cpus = self.cpus_per_task or min(cpus)
        self._gpus = sum(float(n.get("GPU", 0)) for n in nodes)
        if self._cpus > max(cpus):
            return [f"cpus per task {self._cpus}: no node of the Ray cluster has that many "
                    f"(the largest has {max(cpus)})"]
        self._slots = max(1, sum(c // self._cpus for c in cpus))
        if self._gpus:
            self._slots = max(self._slots, int(self._gpus))
        problems = []
        for row in rows:
            device = str(row.settings["device"])
            if device.startswith("cuda") and not self._gpus:
                problems.append(f"{row.where}: device {device!r} asked for, but the Ray "
                                "cluster has no GPU")
            elif device.startswith("mps"):
                problems.append(f"{row.where}: device 'mps' cannot be asked of a Ray cluster; "
                                "use auto")
        return problems

    def _resources(self, row: Row) -> tuple[float, float, int]:
        """(CPUs, GPUs) the row's task asks for, and its torch threads."""
        device = str(row.settings["device"])
        if self._gpus and (device == "auto" or device.startswith("cuda")):
            return 1, 1, 1
        return self._cpus, 0, self._cpus

    def paint(self, batch: Batch, rows: Sequence[Row],
              progress: Progress | None) -> Iterator[tuple[Row, Outcome]]:
        if not self._cpus:  # not checked yet: the cluster's size decides each task's ask

            problems = self.check(batch, rows)
            if problems:
                raise PlanError(problems)
        ray = self.connect()
        task = ray.remote(paint_task)
        uses = Counter(p for row in rows for p in _files_of(row))
        refs: dict[str, tuple[Any, str]] = {}  # a file's object and digest, while rows need it

        def put(path: str) -> tuple[Any, str]:
            if path not in refs:
                data = Path(path).read_bytes()
                refs[path] = (ray.put(data), hashlib.sha256(data).hexdigest())
            found = refs[path]
            uses[path] -= 1
            if uses[path] == 0:
                del refs[path]  # Ray frees it once the tasks holding it are done
            return found

        pending = deque(rows)
        running: dict[Any, Row] = {}
        limit = 2 * self._slots  # enough queued to keep every slot busy, no more inputs held
        try:
            while pending or running:
                while pending and len(running) < limit:
                    row = pending.popleft()
                    try:
                        ref = self._submit(task, row, {**batch.options, **row.options}, put)
                    except OSError as e:
                        yield row, Outcome(None, f"cannot read an input: {_one_line(e)}", {})
                        continue
                    row.state = RUNNING
                    running[ref] = row
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    yield running.pop(ref), self._outcome(ray, ref)
        finally:
            # Ctrl-C, or the driver stopped reading: the tasks still out are not wanted.
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _submit(self, task: Any, row: Row, options: dict[str, Any], put: Any) -> Any:
        """Send the row's task: its options as the local backend would pass them, its
        input files' bytes as objects."""
        options = Settings.normalise(options)
        content_ref, content_digest = put(row.content)
        style_refs = [put(s) for s in row.styles]
        blobs = [content_ref, *(r for r, _ in style_refs)]
        files = {}
        for name in FILE_OPTIONS:
            value = row.settings[name]
            if name == "model" and not os.path.isfile(value) or name == "init" and \
                    value in ("content", "noise"):
                continue
            ref, digest = put(value)
            files[name] = (value, digest)
            blobs.append(ref)
        row.digests = {**row.digests, "content": content_digest,
                       "styles": [d for _, d in style_refs]}
        cpus, gpus, threads = self._resources(row)
        job = {"content": row.content, "styles": list(row.styles), "files": files,
               "options": options, "threads": threads}
        return task.options(num_cpus=cpus, num_gpus=gpus, max_retries=self.retries,
                            name=f"brushwork batch row {row.number}").remote(job, *blobs)

    def _outcome(self, ray: Any, ref: Any) -> Outcome:
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None) or e
            oom = out_of_memory(cause) if isinstance(cause, BaseException) else None
            return Outcome(None, str(oom) if oom else _one_line(cause), {})
        except ray.exceptions.RayError as e:  # the worker or its node died, RETRIES times
            return Outcome(None, f"{type(e).__name__}: {_one_line(e)}", {})
        return Outcome(out["result"], out["error"], out["ran_on"])


def _files_of(row: Row) -> list[str]:
    files = [row.content, *row.styles]
    model, init = row.settings["model"], row.settings["init"]
    if os.path.isfile(model):
        files.append(model)
    if init not in ("content", "noise"):
        files.append(init)
    return files


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1].strip() if text else type(e).__name__


# ---------------------------------------------------------------- in the worker

_CACHE: Cache | None = None  # the worker process's networks, read once


def paint_task(job: dict[str, Any], content: bytes, *blobs: bytes) -> dict[str, Any]:
    """One picture, in a Ray worker: decode the shipped inputs, paint, hand the picture
    back.  A mistake in the inputs is returned as the row's error, not raised."""
    global _CACHE
    import ray
    import torch

    from brushwork.engine.painter import stylize
    from brushwork.io.images import DEFAULT_MAX_PIXELS, load_image_bytes

    torch.set_num_threads(int(job["threads"]))
    if _CACHE is None:
        _CACHE = Cache()
    options = dict(job["options"])
    ran_on: dict[str, Any] = {"host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
                              "pid": os.getpid()}
    n_styles = len(job["styles"])
    limit = int(options.get("max_pixels", DEFAULT_MAX_PIXELS))
    try:
        photo = load_image_bytes(content, name=job["content"], role="content", max_pixels=limit)
        paintings = [load_image_bytes(b, name=n, role="style", max_pixels=limit)
                     for b, n in zip(blobs[:n_styles], job["styles"], strict=True)]
        for (name, (path, digest)), data in zip(job["files"].items(), blobs[n_styles:],
                                                strict=True):
            options[name] = str(_local_file(path, digest, data))
        if str(options.get("device", "auto")).startswith("cuda"):
            options["device"] = "cuda"  # the task's own GPU, whatever its number on the node
        result = stylize(photo, paintings, cache=_CACHE, **options)
    except BrushworkError as e:
        return {"result": None, "error": str(e), "ran_on": ran_on}
    except (MemoryError, RuntimeError) as e:
        oom = out_of_memory(e)
        if oom is None:
            raise
        return {"result": None, "error": str(oom), "ran_on": ran_on}
    ran_on.update(device=result.device, network_loads=_CACHE.network_loads)
    return {"result": result, "error": None, "ran_on": ran_on}


_SAME: dict[tuple[str, int, int], str] = {}  # a local file's digest, by path, time and size


def _local_file(path: str, digest: str, data: bytes) -> Path:
    """A shipped file (a model, an init image) on this worker's disk: the driver's own
    path when this machine has the same file there (a shared disk, or the driver's
    machine; runs then share its calibration and network cache entries), else a copy
    written once per content."""
    here = Path(path)
    with contextlib.suppress(OSError):
        st = here.stat()
        key = (str(here), st.st_mtime_ns, st.st_size)
        if key not in _SAME and st.st_size == len(data):
            _SAME[key] = hashlib.sha256(here.read_bytes()).hexdigest()
        if _SAME.get(key) == digest:
            return here
    folder = Path(tempfile.gettempdir()) / "brushwork-ray" / digest[:32]
    copy = folder / here.name
    if not copy.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{here.name}.{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, copy)
    return copy
