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
import getpass
import hashlib
import logging
import os
import socket
import stat
import tempfile
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from brushwork.batch.check import file_digest
from brushwork.batch.painting import Outcome, Progress
from brushwork.batch.plan import RUNNING, Batch, PlanError, Row
from brushwork.engine.cache import Cache
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError, out_of_memory

RETRIES = 3
INSTALL = "pip install 'brushwork[ray]'"
CONNECT_TIMEOUT_S = 5.0
# Options naming files that the worker must read: shipped as bytes too.
FILE_OPTIONS = ("model", "init", "style_masks", "region_map")
# The folder (in the worker's temporary folder) where shipped files are written, one per
# user: "brushwork-ray-<uid>".
WORKER_FOLDER = "brushwork-ray"


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
        files = []
        digests: dict[str, Any] = {"content": content_digest,
                                   "styles": [d for _, d in style_refs]}
        for name, index, path in _shipped(row):
            ref, digest = put(path)
            files.append((name, index, path, digest))
            blobs.append(ref)
            if name != "model":  # the row's digests name its pictures, as check() made them
                if index is None:
                    digests[name] = digest
                else:
                    digests.setdefault(name, []).append(digest)
        # The digests of the bytes shipped: what is painted, if a file changed since check().
        row.digests = {**row.digests, **digests}
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


def _shipped(row: Row) -> list[tuple[str, int | None, str]]:
    """The row's files other than its pictures that the worker must read: (option, its
    place in the option's list or None, path).  A model named by source, not by file,
    stays a name."""
    out: list[tuple[str, int | None, str]] = []
    for name in FILE_OPTIONS:
        value = row.settings[name]
        if value is None or name == "model" and not os.path.isfile(value) or \
                name == "init" and value in ("content", "noise"):
            continue
        if isinstance(value, (list, tuple)):
            out += [(name, i, v) for i, v in enumerate(value)]
        else:
            out.append((name, None, value))
    return out


def _files_of(row: Row) -> list[str]:
    return [row.content, *row.styles, *(path for _, _, path in _shipped(row))]


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
        lists: dict[str, list[str]] = {}
        for (name, index, path, digest), data in zip(job["files"], blobs[n_styles:],
                                                     strict=True):
            local = str(_local_file(path, digest, data))
            if index is None:
                options[name] = local
            else:
                lists.setdefault(name, []).append(local)
        options.update((name, tuple(paths)) for name, paths in lists.items())
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
    """A shipped file (a model, an init image, a mask) on this worker's disk: the driver's
    own path when this machine has the same file there (a shared disk, or the driver's
    machine; runs then share its calibration and network cache entries), else a copy
    written once per content in this user's private folder (:func:`private_folder`).
    A copy found there is used only if its digest is the one shipped."""
    here = Path(path)
    with contextlib.suppress(OSError):
        st = here.stat()
        key = (str(here), st.st_mtime_ns, st.st_size)
        if key not in _SAME and st.st_size == len(data):
            _SAME[key] = hashlib.sha256(here.read_bytes()).hexdigest()
        if _SAME.get(key) == digest:
            return here
    folder = _private(private_folder() / digest, "the shipped file's folder")
    copy = folder / here.name
    with contextlib.suppress(OSError):
        st = copy.lstat()  # a link is not followed, and not used
        key = (str(copy), st.st_mtime_ns, st.st_size)
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data):
            if key not in _SAME:
                _SAME[key] = file_digest(copy)
            if _SAME[key] == digest:
                return copy
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{here.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, copy)  # over a damaged copy, or a link left there
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    st = copy.lstat()
    _SAME[(str(copy), st.st_mtime_ns, st.st_size)] = digest
    return copy


def private_folder() -> Path:
    """``<temp>/brushwork-ray-<uid>``: made 0700 if missing; used only if it is a real
    folder (not a link), owned by this user and closed to everyone else."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    name = f"{WORKER_FOLDER}-{uid if uid is not None else getpass.getuser()}"
    return _private(Path(tempfile.gettempdir()) / name, "the Ray worker's folder")


def _private(folder: Path, what: str) -> Path:
    """``folder``, made 0700 if missing, after checking (without following links) that
    it is a folder of this user's that no one else can write to or read."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    st = folder.lstat()
    uid = os.getuid() if hasattr(os, "getuid") else None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "is a link" if stat.S_ISLNK(st.st_mode) else "is not a folder"
    elif uid is not None and st.st_uid != uid:
        problem = f"belongs to user {st.st_uid}, not to this one ({uid})"
    elif uid is not None and stat.S_IMODE(st.st_mode) & 0o077:
        problem = f"is open to others (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return folder
    raise BrushworkError(f"{what} '{folder}' {problem}; remove it, and the worker makes "
                         "its own")
