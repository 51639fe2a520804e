"""What the studio keeps between runs: files under the data folder and an SQLite index.

Layout (every file name is a random id chosen here, never a name a user sent)::

    DATA/studio.db               uploads and jobs (state, options, losses, errors), and
                                 the running job's loss points saved so far
    DATA/uploads/ID.EXT          an uploaded image, decoded and re-encoded (.png or .jpg)
    DATA/uploads/ID.thumb.jpg    its thumbnail
    DATA/results/ID.png          a finished job's picture, settings inside (Result.save)
    DATA/results/ID.thumb.jpg    its thumbnail
    DATA/uploads/ID.mp4 ...      an uploaded video (a clip), kept as it was sent
    DATA/results/ID.mp4          a finished clip job's video (brushwork.video)
    DATA/results/ID.mp4.frames/  a clip job's finished frames while it paints (resume)
    DATA/results/ID/             a plan's folder: its pictures, index.json, sheet.png
                                 (brushwork.batch; ID.thumb.jpg is then its sheet's)

Files are written to a temporary name and renamed into place; the database row that
points at them is committed afterwards, and a row is deleted before its files, so a
crash leaves at worst an unused file, which :meth:`Store.prune` removes at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from brushwork.errors import BrushworkError
from brushwork.io import checkpoint as checkpoints
from brushwork.io.images import read_metadata

ID_RE = re.compile(r"[0-9a-f]{16}")
# In results/: a job's picture or thumbnail, and the temporary file of one being written
# (write_atomic and save_image name those ".NAME.random").
_RESULT_FILE = re.compile(r"([0-9a-f]{16})\.(?:png|mp4|thumb\.jpg)")
_TEMP_FILE = re.compile(r"\.[0-9a-f]{16}\.(?:png|mp4|thumb\.jpg)\..+")
# What a job of each kind leaves in results/ beside its thumbnail; and a clip job's
# folder of finished frames (brushwork.video.frames), kept while the job is unfinished.
RESULT_EXT = {"picture": ".png", "clip": ".mp4"}
_FRAMES_DIR = re.compile(r"([0-9a-f]{16})\.mp4\.frames")
# A running job's saved state (brushwork.io.checkpoint.path_for of its picture).
_CHECKPOINT_FILE = re.compile(r"([0-9a-f]{16})\.png" + re.escape(checkpoints.SUFFIX))
_CHECKPOINT_TEMP = re.compile(r"[0-9a-f]{16}\.png" + re.escape(checkpoints.SUFFIX) + r"\..+\.tmp")
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,          -- display only
    ext TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    grey_min INTEGER,            -- the picture's darkest and lightest grey, 0..255
    grey_max INTEGER,            -- (NULL for an upload stored before they were recorded)
    video TEXT                   -- JSON, for a video (a clip): frames, fps, duration, codec
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'picture',  -- what the job makes (job.KINDS)
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    content TEXT NOT NULL,       -- upload id
    styles TEXT NOT NULL,        -- JSON list of upload ids
    masks TEXT,                  -- JSON list of upload ids, one region mask per style
    options TEXT NOT NULL,       -- JSON: the options as the API received them
    settings TEXT,               -- JSON: the full settings the run used
    error TEXT,
    losses TEXT,                 -- JSON: final weighted losses
    history TEXT,                -- JSON: one entry per evaluation
    total INTEGER,
    elapsed REAL,
    width INTEGER,
    height INTEGER,
    detail TEXT                  -- JSON: what a job of another kind than a picture reports
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
-- A running job's history as it goes, appended in batches (jobs.history is written
-- whole when the job ends, or by recover() after a crash, and these rows then go).
CREATE TABLE IF NOT EXISTS job_points (
    job_id TEXT NOT NULL,
    point TEXT NOT NULL          -- JSON: one entry of the history, in rowid order
);
CREATE INDEX IF NOT EXISTS job_points_job ON job_points(job_id);
"""

_JSON_COLUMNS = ("styles", "masks", "options", "settings", "losses", "history", "detail")


def new_id() -> str:
    return secrets.token_hex(8)


def valid_id(value: str) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


class QuotaFull(Exception):
    """The stored uploads are at their quota (HTTP 507); the message says how to free space."""


class UploadInUse(Exception):
    """An upload a waiting or running job needs (HTTP 409)."""


class Store:
    """The SQLite index and the file layout.  Thread-safe (one connection, one lock)."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.dir = Path(data_dir)
        self.uploads_dir = self.dir / "uploads"
        self.results_dir = self.dir / "results"
        try:
            for d in (self.dir, self.uploads_dir, self.results_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.dir, prefix=".probe-")
            probe.close()
        except OSError as e:
            raise BrushworkError(f"data folder {str(self.dir)!r} cannot be used "
                                 f"({e.strerror or e})") from None
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.dir / "studio.db", check_same_thread=False,
                                       isolation_level=None)  # autocommit; explicit BEGINs
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "masks" not in columns:  # a data folder from before regions
                self._db.execute("ALTER TABLE jobs ADD COLUMN masks TEXT")
            if "kind" not in columns:  # from before clips and plans: every job a picture
                self._db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL "
                                 "DEFAULT 'picture'")
            if "detail" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN detail TEXT")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(uploads)")}
            for column in ("grey_min", "grey_max"):  # from before they were recorded
                if column not in columns:
                    self._db.execute(f"ALTER TABLE uploads ADD COLUMN {column} INTEGER")
            if "video" not in columns:  # from before clips
                self._db.execute("ALTER TABLE uploads ADD COLUMN video TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise BrushworkError(f"database {str(self.dir / 'studio.db')!r} cannot be "
                                 f"used ({e})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- files ---------------------------------------------------------------------------

    def upload_path(self, upload_id: str, ext: str) -> Path:
        assert valid_id(upload_id) and re.fullmatch(r"\.[a-z0-9]{2,5}", ext)
        return self.uploads_dir / f"{upload_id}{ext}"

    def upload_thumb(self, upload_id: str) -> Path:
        assert valid_id(upload_id)
        return self.uploads_dir / f"{upload_id}.thumb.jpg"

    def checkpoint_path(self, job_id: str) -> Path:
        """Where a running job saves its state (brushwork.io.checkpoint), beside its
        picture-to-be."""
        return checkpoints.path_for(self.result_path(job_id))

    def result_path(self, job_id: str) -> Path:
        assert valid_id(job_id)
        return self.results_dir / f"{job_id}.png"

    def result_file(self, job_id: str, kind: str = "picture") -> Path:
        """What a finished job of ``kind`` made: a picture, a clip's video."""
        assert valid_id(job_id)
        return self.results_dir / f"{job_id}{RESULT_EXT.get(kind, '.png')}"

    def frames_dir(self, job_id: str) -> Path:
        """A clip job's finished frames while it paints (brushwork.video.frames.folder_for
        of its video)."""
        return self.results_dir / f"{job_id}.mp4.frames"

    def result_thumb(self, job_id: str) -> Path:
        assert valid_id(job_id)
        return self.results_dir / f"{job_id}.thumb.jpg"

    def job_dir(self, job_id: str) -> Path:
        """The folder of a job that makes many files (a plan's batch)."""
        assert valid_id(job_id)
        return self.results_dir / job_id

    @staticmethod
    def write_atomic(path: Path, data: bytes) -> None:
        tmp = tempfile.NamedTemporaryFile(delete=False, dir=path.parent, prefix=f".{path.name}.")
        try:
            with tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp.name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
            raise

    # -- uploads -------------------------------------------------------------------------

    def add_upload(self, *, name: str, ext: str, format: str, width: int, height: int,
                   data: bytes | Path, thumb: bytes, grey: tuple[int, int] | None = None,
                   quota_bytes: int | None = None, max_uploads: int | None = None,
                   video: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store an upload; QuotaFull if it would take the uploads past a quota given.
        ``grey``: the picture's darkest and lightest grey, if known.  ``data``: the
        file's bytes, or a file in the uploads folder, renamed into place (a video).
        ``video``: what a video upload's probe found (frames, fps, duration ...)."""
        upload_id = new_id()
        files = (self.upload_path(upload_id, ext), self.upload_thumb(upload_id))
        if isinstance(data, Path):
            size = data.stat().st_size
            os.replace(data, files[0])
        else:
            size = len(data)
            self.write_atomic(files[0], data)
        self.write_atomic(files[1], thumb)
        row = {"id": upload_id, "name": name, "ext": ext, "format": format, "width": width,
               "height": height, "bytes": size, "created": time.time(),
               "grey_min": grey[0] if grey else None, "grey_max": grey[1] if grey else None,
               "video": json.dumps(video) if video is not None else None}
        try:
            with self._lock:  # checked and inserted at once: two cannot take the last room
                self.check_quota(size, quota_bytes, max_uploads)
                self._db.execute("INSERT INTO uploads (id, name, ext, format, width, height, "
                                 "bytes, created, grey_min, grey_max, video) VALUES (:id, "
                                 ":name, :ext, :format, :width, :height, :bytes, :created, "
                                 ":grey_min, :grey_max, :video)", row)
        except BaseException:
            for path in files:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return dict(row, video=video)

    def upload_usage(self) -> tuple[int, int]:
        """(number of uploads, bytes of their stored images)."""
        with self._lock:
            n, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) "
                                        "FROM uploads").fetchone()
        return n, total

    def check_quota(self, adding: int, quota_bytes: int | None,
                    max_uploads: int | None) -> None:
        """QuotaFull if one more upload of ``adding`` bytes would pass a quota."""
        n, total = self.upload_usage()
        over = []
        if quota_bytes is not None and total + adding > quota_bytes:
            over.append(f"{total / 2**20:.1f} MB of {quota_bytes / 2**20:.1f} MB used"
                        + (f", this one needs {adding / 2**20:.1f} MB" if adding else ""))
        if max_uploads is not None and n + 1 > max_uploads:
            over.append(f"{n} of {max_uploads} uploads stored")
        if over:
            raise QuotaFull(f"the studio's uploads are at their quota ({'; '.join(over)}); "
                            "free space by deleting uploads (DELETE /api/uploads/{id}; "
                            "GET /api/uploads lists them)")

    def uploads(self) -> list[dict[str, Any]]:
        """Every upload, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM uploads ORDER BY created DESC").fetchall()
        return [_upload_row(r) for r in rows]

    def delete_upload(self, upload_id: str) -> bool:
        """Remove an upload and its files; False if there is none.

        Refused (UploadInUse) while a waiting or running job needs it.  Ended jobs that
        used it keep their rows and results; only their images can no longer be reused.
        (A job submitted as its image is deleted may still be queued: the worker then
        fails it, "an uploaded image is no longer stored".)
        """
        if not valid_id(upload_id):
            return False
        with self._lock:
            row = self.upload(upload_id)
            if row is None:
                return False
            user = self._db.execute(
                "SELECT id, state FROM jobs WHERE state IN ('queued', 'running') AND "
                "(content = ? OR EXISTS (SELECT 1 FROM json_each(jobs.styles) "
                "WHERE json_each.value = ?) OR EXISTS (SELECT 1 FROM "
                "json_each(COALESCE(jobs.masks, '[]')) WHERE json_each.value = ?) "
                # a plan's photos (brushwork.studio.plans), beside its first in content
                "OR EXISTS (SELECT 1 FROM json_each(COALESCE(json_extract(jobs.options, "
                "'$.plan.photos'), '[]')) WHERE json_each.value = ?)) LIMIT 1",
                (upload_id, upload_id, upload_id, upload_id)).fetchone()
            if user is not None:
                raise UploadInUse(f"job {user['id']} ({user['state']}) uses this image; "
                                  "cancel it or wait for it to end")
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        for path in (self.upload_path(upload_id, row["ext"]), self.upload_thumb(upload_id)):
            with contextlib.suppress(OSError):
                path.unlink()
        return True

    def upload(self, upload_id: str) -> dict[str, Any] | None:
        if not valid_id(upload_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return _upload_row(row) if row else None

    def upload_file(self, upload_id: str) -> Path | None:
        row = self.upload(upload_id)
        if row is None:
            return None
        path = self.upload_path(upload_id, row["ext"])
        return path if path.is_file() else None

    # -- jobs ----------------------------------------------------------------------------

    def add_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, state, created, content, styles, masks, options, "
                "total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job["id"], job.get("kind", "picture"), job["state"], job["created"],
                 job["content"],
                 json.dumps(job["styles"]),
                 json.dumps(job["masks"]) if job.get("masks") else None,
                 json.dumps(job["options"]), job.get("total")))

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set a job's fields; a whole ``history`` replaces the points saved so far."""
        assert fields and all(re.fullmatch(r"[a-z_]+", k) for k in fields)
        values = [json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
                  for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock, self._transaction():
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))
            if "history" in fields:
                self._db.execute("DELETE FROM job_points WHERE job_id = ?", (job_id,))

    def add_points(self, job_id: str, points: list[dict[str, float]]) -> None:
        """Save more of a running job's history (one commit); nothing once it has ended."""
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO job_points (job_id, point) SELECT id, ? FROM jobs "
                "WHERE id = ? AND state = 'running'",
                [(json.dumps(p), job_id) for p in points])

    def saved_points(self, job_id: str) -> list[dict[str, float]]:
        """The history a running job had saved (what a crash leaves of it)."""
        with self._lock:
            rows = self._db.execute("SELECT point FROM job_points WHERE job_id = ? "
                                    "ORDER BY rowid", (job_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def job(self, job_id: str) -> dict[str, Any] | None:
        if not valid_id(job_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(row) if row else None

    def jobs(self, states: Iterable[str] | None = None, *, limit: int = 200, offset: int = 0,
             history: bool = False) -> list[dict[str, Any]]:
        cols = "*" if history else ", ".join(c for c in _columns() if c != "history")
        query = f"SELECT {cols} FROM jobs"
        args: list[Any] = []
        if states is not None:
            states = list(states)
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += states
        query += " ORDER BY created DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [_decode(r) for r in rows]

    def count(self, states: Iterable[str]) -> int:
        states = list(states)
        with self._lock:
            return self._db.execute(
                f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})",
                states).fetchone()[0]

    def delete_job(self, job_id: str) -> bool:
        if not valid_id(job_id):
            return False
        with self._lock:
            cur = self._db.execute("DELETE FROM jobs WHERE id = ? AND state NOT IN "
                                   "('queued', 'running')", (job_id,))
        if cur.rowcount:
            for path in (*(self.result_file(job_id, k) for k in RESULT_EXT),
                         self.result_thumb(job_id)):
                with contextlib.suppress(OSError):
                    path.unlink()
            if self.job_dir(job_id).is_dir() and not self.job_dir(job_id).is_symlink():
                shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return bool(cur.rowcount)

    def prune(self) -> dict[str, int]:
        """At start: remove what a crash left half-done; how many files and rows went.

        In uploads/: every file but the images and thumbnails of upload rows, and the rows
        whose image or thumbnail is missing.  In results/: pictures, thumbnails and
        folders of no job, and temporary files of unfinished writes (other files are left
        alone).
        Call it with nothing running (the studio's start, after :meth:`recover`).
        """
        counts = {"files": 0, "uploads": 0}
        with self._lock:
            uploads = {r[0]: r[1] for r in self._db.execute("SELECT id, ext FROM uploads")}
            jobs = {r[0] for r in self._db.execute("SELECT id FROM jobs")}
            for upload_id, ext in list(uploads.items()):
                if not (self.upload_path(upload_id, ext).is_file()
                        and self.upload_thumb(upload_id).is_file()):
                    self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
                    del uploads[upload_id]
                    counts["uploads"] += 1
        keep = {f"{i}{ext}" for i, ext in uploads.items()} | {f"{i}.thumb.jpg" for i in uploads}
        stale = [p for p in self.uploads_dir.iterdir() if p.name not in keep]
        with self._lock:
            active = {r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE state IN ('queued', 'running')")}
        for p in self.results_dir.iterdir():
            frames = _FRAMES_DIR.fullmatch(p.name)
            if frames and frames[1] not in active and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)  # a clip job's, ended or gone
                counts["files"] += 1
                continue
            result = _RESULT_FILE.fullmatch(p.name)
            saved = _CHECKPOINT_FILE.fullmatch(p.name)
            if _TEMP_FILE.fullmatch(p.name) or _CHECKPOINT_TEMP.fullmatch(p.name) or (
                    result and result[1] not in jobs) or (
                    saved and saved[1] not in active):
                stale.append(p)
            elif ID_RE.fullmatch(p.name) and p.name not in jobs and p.is_dir() \
                    and not p.is_symlink():  # a deleted plan's folder, the row gone first
                shutil.rmtree(p, ignore_errors=True)
                counts["files"] += 1
        for path in stale:
            if path.is_file() or path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
                    counts["files"] += 1
        return counts

    def recover(self) -> list[str]:
        """After a restart: the jobs the last run left queued or running, which are to go
        on (queued again, in their order, by the studio's start; a running one from its
        checkpoint).

        A job whose picture was written but whose row was not yet committed (the process
        died in between) is marked done from the settings inside the picture instead.
        Either keeps the history the job had saved as it ran.
        """
        changed = []
        for listed in self.jobs(ACTIVE, limit=1_000_000):
            job = self.job(listed["id"]) or listed
            # A crash leaves the points saved as it ran; a stop, the whole history.
            history = self.saved_points(job["id"]) or job.get("history")
            path = self.result_path(job["id"])
            meta = None
            if path.is_file():
                with contextlib.suppress(BrushworkError):
                    meta = read_metadata(path)
            if meta is not None:
                self.update_job(job["id"], state="done", finished=path.stat().st_mtime,
                                settings=meta.get("settings"), losses=meta.get("final_losses"),
                                elapsed=meta.get("elapsed_s"), history=history)
            else:
                self.update_job(job["id"], state="queued", history=history)
            changed.append(job["id"])
        return changed


def _columns() -> list[str]:
    return ["id", "kind", "state", "created", "started", "finished", "content", "styles",
            "masks", "options", "settings", "error", "losses", "history", "total", "elapsed",
            "width", "height", "detail"]


def _upload_row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    if out.get("video") is not None:
        out["video"] = json.loads(out["video"])
    return out


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for k in _JSON_COLUMNS:
        if out.get(k) is not None:
            out[k] = json.loads(out[k])
    return out
