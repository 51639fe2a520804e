"""Many pictures: every photo times every painting, or the rows of a plan file.

A batch is planned (:func:`grid`, :func:`from_plan_file`), checked whole before any
picture is painted (:func:`check`: every problem named by its row, one line each), then
painted by a backend, here (:class:`LocalBackend`: one picture at a time, or one per GPU)
or on a Ray cluster (:class:`brushwork.batch_ray.RayBackend`), while :func:`run` writes each
result as it arrives, with its settings inside, and keeps ``DIR/index.json`` up to date.
A rerun skips the pictures already there with the same settings and inputs.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from PIL import Image

from . import __version__
from .cache import Cache
from .engine import Iterate, Result, stylize
from .errors import BrushworkError, out_of_memory
from .imageio import (
    INPUT_FORMATS,
    INPUT_FORMATS_TEXT,
    OUTPUT_FORMATS,
    check_output_path,
    check_side_file,
    load_image,
    read_metadata,
    save_image,
    save_text,
)
from .settings import OptionSpec, Settings, option_specs
from .vgg import check_layers

INDEX = "index.json"
SHEET = "sheet.png"
# Problems listed in one error; a systematic mistake in a plan of 1,500 rows says so
# in a screenful.
MAX_PROBLEMS_SHOWN = 20
MAX_SHEET_CELLS = 400
INDEX_EVERY_S = 1.0  # the shortest time between two rewrites of index.json
# Row states in index.json.
PENDING, RUNNING, DONE, SKIPPED, FAILED, INTERRUPTED = (
    "pending", "running", "done", "skipped", "failed", "interrupted")
PLAN_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class PlanError(BrushworkError):
    """The batch cannot start; ``problems`` holds one line per problem, each naming its row."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            shown = self.problems[:MAX_PROBLEMS_SHOWN]
            more = len(self.problems) - len(shown)
            text = f"the batch has {len(self.problems)} problems; nothing was painted:\n" + \
                "\n".join(f"  {p}" for p in shown) + (f"\n  ... and {more} more" if more else "")
        super().__init__(text)


@dataclass
class Row:
    """One picture of a batch: what to paint, and (once run) how it went."""

    number: int  # 1-based, in plan order
    where: str  # how messages name the row: "row 3 (a.jpg x b.jpg)", "plan.csv line 4"
    content: str
    styles: tuple[str, ...]
    output: str  # relative to the batch's folder, with / between parts
    options: dict[str, Any] = field(default_factory=dict)  # the row's own, over the batch's
    problems: list[str] = field(default_factory=list)  # found while reading the plan
    settings: dict[str, Any] = field(default_factory=dict)  # resolved, set by check()
    digests: dict[str, Any] = field(default_factory=dict)  # sha256 of the inputs
    state: str = PENDING
    losses: dict[str, float] | None = None
    elapsed: float | None = None
    ran_on: dict[str, Any] | None = None  # host, pid, device (and backend)
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        """The row's entry in index.json."""
        return {"row": self.number, "where": self.where, "content": self.content,
                "styles": list(self.styles), "output": self.output,
                "options": _lists(self.options), "state": self.state, "losses": self.losses,
                "elapsed_s": None if self.elapsed is None else round(self.elapsed, 2),
                "ran_on": self.ran_on, "error": self.error}


@dataclass
class Batch:
    rows: list[Row]
    directory: Path  # where the pictures, index.json and sheet.png go
    options: dict[str, Any]  # every row's settings unless it says otherwise
    source: str  # "grid" or the plan file
    interrupted: bool = False
    backend: dict[str, Any] = field(default_factory=dict)  # what index.json says ran it

    def path_of(self, row: Row) -> Path:
        return self.directory / row.output

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.state] = out.get(row.state, 0) + 1
        return out


# ---------------------------------------------------------------- what to paint

def image_extensions() -> set[str]:
    """File name endings taken from a folder: those Pillow gives the accepted formats."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in INPUT_FORMATS}


def image_files(path: str | os.PathLike[str], role: str) -> list[Path]:
    """``path`` itself if it is a file, else the accepted images in the folder (by name,
    hidden files left out); a missing path or a folder with no image is an error."""
    p = Path(os.fsdecode(path)).expanduser()
    if p.is_dir():
        exts = image_extensions()
        found = sorted(f for f in p.iterdir()
                       if f.suffix.lower() in exts and not f.name.startswith(".") and f.is_file())
        if not found:
            raise BrushworkError(f"{role} folder '{p}' holds no images "
                                 f"(accepted: {INPUT_FORMATS_TEXT})")
        return found
    if not p.exists():
        raise BrushworkError(f"{role} '{p}' does not exist")
    return [p]


def output_name(content: str, styles: Sequence[str]) -> str:
    """The default picture name of a row: ``photo__painting.png`` (``__a+b`` for a blend)."""
    return f"{Path(content).stem}__{'+'.join(Path(s).stem for s in styles)}.png"


def grid(contents: Sequence[str | os.PathLike[str]], styles: Sequence[str | os.PathLike[str]],
         directory: str | os.PathLike[str], **options: Any) -> Batch:
    """Every photo in ``contents`` (files or folders) with every painting in ``styles``."""
    if not contents or not styles:
        raise BrushworkError("a batch needs at least one content and one style path")
    photos = [f for c in contents for f in image_files(c, "content")]
    paintings = [f for s in styles for f in image_files(s, "style")]
    rows = [Row(i, f"row {i} ({c.name} x {s.name})", str(c), (str(s),),
                output_name(str(c), [str(s)]))
            for i, (c, s) in enumerate(((c, s) for c in photos for s in paintings), 1)]
    return Batch(rows, Path(os.fsdecode(directory)).expanduser(), dict(options), "grid")


def from_plan_file(plan: str | os.PathLike[str], directory: str | os.PathLike[str],
                   **options: Any) -> Batch:
    """The rows of a CSV or JSON Lines file: ``content``, ``styles`` (or ``style``; several
    separated by ``;`` in a CSV), optional ``output`` (inside the batch's folder) and any
    stylize option, which then overrides ``options`` for that row.  Relative paths are
    taken from the plan file's folder.  Problems in a row are kept on it for :func:`check`;
    an unreadable file is an error at once."""
    path = Path(os.fsdecode(plan)).expanduser()
    kind = PLAN_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise BrushworkError(f"plan '{path}' must be a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BrushworkError(f"plan '{path}' does not exist") from None
    except (OSError, UnicodeError) as e:
        raise BrushworkError(f"plan '{path}' cannot be read ({e})") from None
    records = _csv_records(text, path.name) if kind == "csv" else _jsonl_records(text, path.name)
    if not records:
        raise BrushworkError(f"plan '{path}' has no rows")
    rows = [_plan_row(i, where, record, path.parent, kind)
            for i, (where, record) in enumerate(records, 1)]
    return Batch(rows, Path(os.fsdecode(directory)).expanduser(), dict(options), str(path))


def _csv_records(text: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    out = []
    for record in reader:
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue  # a blank line
        where = f"{name} line {reader.line_num}"
        if None in record:  # more cells than the header has names
            record = {k: v for k, v in record.items() if k is not None}
            record["__problem__"] = "has more cells than the header names"
        out.append((where, {k.strip(): v for k, v in record.items() if k}))
    return out


def _jsonl_records(text: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {n}"
        try:
            record = json.loads(line)
        except ValueError as e:
            out.append((where, {"__problem__": f"is not valid JSON ({e})"}))
            continue
        if not isinstance(record, dict):
            out.append((where, {"__problem__": "is not a JSON object"}))
            continue
        out.append((where, record))
    return out


def _option_names() -> dict[str, OptionSpec]:
    """Each option by its settings name and by its flag's name (``content-weight``, ``lr``)."""
    names: dict[str, OptionSpec] = {}
    for spec in option_specs():
        names[spec.name] = spec
        names[spec.flag.lstrip("-")] = spec
        names[spec.flag.lstrip("-").replace("-", "_")] = spec
    return names


def _plan_row(number: int, where: str, record: dict[str, Any], base: Path, kind: str) -> Row:
    if "__problem__" in record and "content" not in record:  # a line that did not parse
        return Row(number, where, "", (), "", {}, [f"{where}: {record['__problem__']}"])
    problems = [f"{where}: {record.pop('__problem__')}"] if "__problem__" in record else []
    content = record.pop("content", None)
    styles_value = record.pop("styles", None)
    style_value = record.pop("style", None)
    output = record.pop("output", None)
    styles = _path_list(styles_value if styles_value is not None else style_value)
    content = content.strip() if isinstance(content, str) else ""
    content_path = _relative_to(base, content) if content else ""
    style_paths = tuple(_relative_to(base, s) for s in styles)
    if content and styles:  # name the row by its pictures too, in every message
        where += f" ({Path(content).name} x {'+'.join(Path(s).name for s in styles)})"
    if styles_value is not None and style_value is not None:
        problems.append(f"{where}: give 'styles' or 'style', not both")
    if not content:
        problems.append(f"{where}: no content image")
    if not styles:
        problems.append(f"{where}: no style image")
    specs = _option_names()
    options: dict[str, Any] = {}
    for key, value in record.items():
        if kind == "csv" and (value is None or not str(value).strip()):
            continue  # an empty cell: the batch's option applies
        spec = specs.get(str(key).strip())
        if spec is None:
            close = difflib.get_close_matches(str(key), list(specs), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{where}: unknown option '{key}'{hint}")
            continue
        try:
            options[spec.name] = _from_text(spec, value) if kind == "csv" else _from_json(value)
        except ValueError as e:
            problems.append(f"{where}: {spec.name}: {e}")
    if isinstance(output, str) and output.strip():
        out = output.strip()
    elif output is None or isinstance(output, str):
        out = output_name(content_path or "picture", style_paths or ("style",))
    else:
        problems.append(f"{where}: output must be a file name, not {output!r}")
        out = ""
    return Row(number, where, content_path, style_paths, out, options, problems)


def _path_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(";") if s.strip()]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s.strip() for s in value if s.strip()]
    return []


def _relative_to(base: Path, path: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _from_text(spec: OptionSpec, text: Any) -> Any:
    """A CSV cell as the option's value, as the CLI's flag would read it."""
    text = str(text).strip()
    if spec.kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        if spec.kind == "int":
            return int(text)
        if spec.kind == "float":
            return float(text)
        if spec.kind == "strs":
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if spec.kind == "floats":
            return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        what = {"int": "a whole number", "float": "a number"}.get(spec.kind, "numbers")
        raise ValueError(f"expected {what}, got {text!r}") from None
    return text


def _from_json(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# ---------------------------------------------------------------- the check

def check(batch: Batch, *, cache: Cache | None = None, force: bool = False,
          backend: Backend | None = None, sheet: bool = False,
          log: Callable[[str], None] | None = None) -> None:
    """Check the whole batch before any picture is painted, and mark the rows whose
    picture is already there with the same settings and inputs as skipped (all rows are
    painted again with ``force``).  Raises :class:`PlanError` listing every problem,
    each naming its row."""
    cache = cache or Cache()
    problems: list[str] = [p for row in batch.rows for p in row.problems]
    for row in batch.rows:
        row.settings = {}
        try:
            row.settings = Settings(**_tuples({**batch.options, **row.options})).to_dict()
        except BrushworkError as e:
            problems.append(f"{row.where}: {e}")
    good = [row for row in batch.rows if row.settings and not row.problems]
    problems += _check_images(good)
    problems += _check_models(good, cache, log)
    if backend is not None:
        problems += backend.check(batch, good)
    problems += _check_outputs(batch, force)
    if sheet:
        problems += _check_sheet(batch, force)
    if problems:
        raise PlanError(problems)
    for row in batch.rows:
        row.state, row.losses, row.elapsed, row.ran_on, row.error = PENDING, None, None, None, None
    if not force:
        for row in batch.rows:
            _mark_if_done(batch, row)


def _check_images(rows: Sequence[Row]) -> list[str]:
    """Every input decodes (each file once per size limit), and its digest for the rows."""
    problems = []
    seen: dict[tuple[str, str, int], str | BrushworkError] = {}

    def digest(path: str, role: str, limit: int) -> str:
        key = (path, role, limit)
        if key not in seen:
            try:
                load_image(path, role=role, max_pixels=limit)
                seen[key] = file_digest(path)
            except (BrushworkError, OSError) as e:
                seen[key] = e if isinstance(e, BrushworkError) else BrushworkError(str(e))
        found = seen[key]
        if isinstance(found, BrushworkError):
            raise found
        return found

    for row in rows:
        limit = row.settings["max_pixels"]
        try:
            row.digests = {"content": digest(row.content, "content", limit),
                           "styles": [digest(s, "style", limit) for s in row.styles]}
            init = row.settings["init"]
            if init not in ("content", "noise"):
                row.digests["init"] = digest(init, "init", limit)
            weights = row.settings["style_weights"]
            if weights is not None and len(weights) != len(row.styles):
                raise BrushworkError(f"style_weights has {len(weights)} values for "
                                     f"{len(row.styles)} style images")
        except BrushworkError as e:
            problems.append(f"{row.where}: {e}")
    return problems


def _check_models(rows: Sequence[Row], cache: Cache,
                  log: Callable[[str], None] | None) -> list[str]:
    """Each model reads (once, into ``cache``) and has the rows' layers."""
    problems = []
    archs: dict[str, str | BrushworkError] = {}
    for row in rows:
        model = row.settings["model"]
        if model not in archs:
            try:
                archs[model] = cache.weights(model, log).arch
            except BrushworkError as e:
                archs[model] = e
        arch = archs[model]
        try:
            if isinstance(arch, BrushworkError):
                raise arch
            check_layers(arch, tuple(row.settings["content_layers"]), "content")
            check_layers(arch, tuple(row.settings["style_layers"]), "style")
        except BrushworkError as e:
            problems.append(f"{row.where}: {e}")
    return problems


def _check_outputs(batch: Batch, force: bool) -> list[str]:
    problems = []
    d = batch.directory
    if d.exists() and not d.is_dir():
        return [f"output folder '{d}' exists and is not a folder"]
    try:
        if d.exists():
            check_side_file(d / INDEX, "index", force=True)
        elif not d.parent.is_dir():
            return [f"output folder '{d}': '{d.parent}' does not exist"]
        else:
            check_side_file(d, "output folder", force=False)
    except BrushworkError as e:
        return [str(e)]
    index = d / INDEX
    if index.exists() and not force and not _is_ours(index):
        problems.append(f"'{index}' exists and is not a batch's index; pass --force to "
                        "replace it, or choose another folder")
    taken: dict[str, Row] = {}
    for row in batch.rows:
        if not row.output:
            continue
        rel = PurePosixPath(row.output.replace(os.sep, "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            problems.append(f"{row.where}: output '{row.output}' must be a file name inside "
                            f"the output folder")
            continue
        row.output = str(rel)
        if rel.suffix.lower() not in OUTPUT_FORMATS:
            what = f"extension '{rel.suffix}'" if rel.suffix else "no extension"
            problems.append(f"{row.where}: output '{row.output}' has {what}; use one of "
                            f"{', '.join(OUTPUT_FORMATS)}")
            continue
        if str(rel) in (INDEX, SHEET):
            problems.append(f"{row.where}: output '{row.output}' is the batch's own file")
            continue
        first = taken.setdefault(str(rel), row)
        if first is not row:
            problems.append(f"{row.where}: writes '{row.output}', as {first.where} does")
            continue
        problems += _check_output_file(batch, row, force)
    return problems


def _check_output_file(batch: Batch, row: Row, force: bool) -> list[str]:
    """The picture can be written (links followed, folders in the way refused); one that
    is there already is fine when it is this row's, else it needs ``force``."""
    path = batch.path_of(row)
    parent = path.parent
    while not parent.exists() and parent != batch.directory.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return [f"{row.where}: output '{row.output}': '{parent}' is not a folder"]
    if not path.parent.is_dir():
        return []  # made when the picture is written
    try:
        check_output_path(path, force=True, metadata=True)
    except BrushworkError as e:
        return [f"{row.where}: {e}"]
    if not path.exists() or force or not row.settings or not row.digests:
        return []  # a row with another problem is not compared
    if _done_before(path, row) is None:
        return [f"{row.where}: output '{row.output}' exists with other settings or inputs; "
                f"pass --force to paint it again"]
    return []


def _check_sheet(batch: Batch, force: bool) -> list[str]:
    pairs: dict[tuple[str, tuple[str, ...]], Row] = {}
    for row in batch.rows:
        first = pairs.setdefault((row.content, row.styles), row)
        if first is not row:
            return [f"--sheet needs one row per photo and painting; {row.where} repeats "
                    f"{first.where}"]
    photos = {row.content for row in batch.rows}
    paintings = {row.styles for row in batch.rows}
    if len(photos) * len(paintings) > MAX_SHEET_CELLS:
        return [f"--sheet: {len(photos)} photos x {len(paintings)} paintings are more than "
                f"{MAX_SHEET_CELLS} cells"]
    sheet = batch.directory / SHEET
    if sheet.exists() and not force:
        try:
            ours = "brushwork_batch" in (read_metadata(sheet) or {})
        except BrushworkError:
            ours = False
        if not ours:
            return [f"'{sheet}' exists and is not a batch's sheet; pass --force to replace it"]
    return []


def _is_ours(index: Path) -> bool:
    try:
        return "brushwork_batch" in json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _done_before(path: Path, row: Row) -> dict[str, Any] | None:
    """The metadata of ``path`` if it is this row's finished picture: same settings, same
    input files (by content), not interrupted; else None."""
    try:
        meta = read_metadata(path)
    except BrushworkError:
        return None
    if not meta or meta.get("interrupted") or meta.get("settings") != row.settings:
        return None
    if (meta.get("batch") or {}).get("digests") != row.digests:
        return None
    return meta


def _mark_if_done(batch: Batch, row: Row) -> None:
    path = batch.path_of(row)
    meta = _done_before(path, row) if path.is_file() else None
    if meta is not None:
        row.state = SKIPPED
        row.losses = meta.get("final_losses")
        row.elapsed = meta.get("elapsed_s")
        row.ran_on = (meta.get("batch") or {}).get("ran_on")


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- painting

@dataclass
class Outcome:
    """What a backend hands back for one row: the picture, or why there is none."""

    result: Result | None
    error: str | None
    ran_on: dict[str, Any]


Progress = Callable[[Row, float], None]  # a row and the share of it done, 0..1


class Backend(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def check(self, batch: Batch, rows: Sequence[Row]) -> list[str]: ...

    def paint(self, batch: Batch, rows: Sequence[Row],
              progress: Progress | None) -> Iterator[tuple[Row, Outcome]]: ...


class _Stop(Exception):
    """Raised in a worker thread's callback to end its picture after Ctrl-C."""


class LocalBackend:
    """Paints here: one picture at a time (one run already keeps every core busy), or one
    per GPU on a machine with several, all sharing one :class:`Cache` so each network is
    read once."""

    def __init__(self, devices: Sequence[str] | None = None, cache: Cache | None = None) -> None:
        # devices: one worker per entry, each painting the rows whose device is "auto"
        # on its own device; None: one per CUDA GPU where there are several, else one.
        self.devices = list(devices) if devices is not None else local_devices()
        self.cache = cache or Cache()

    def describe(self) -> dict[str, Any]:
        return {"name": "local", "host": socket.gethostname(),
                "devices": self.devices or "one worker; each row's device setting"}

    def check(self, batch: Batch, rows: Sequence[Row]) -> list[str]:
        from .device import resolve_device

        problems = []
        for row in rows:
            device = row.settings["device"]
            wanted = [device] if device != "auto" else [d for d in self.devices if d]
            try:
                for d in wanted:
                    resolve_device(d)
            except BrushworkError as e:
                problems.append(f"{row.where}: {e}")
        return problems

    def paint(self, batch: Batch, rows: Sequence[Row],
              progress: Progress | None) -> Iterator[tuple[Row, Outcome]]:
        if len(self.devices) <= 1:
            device = self.devices[0] if self.devices else None
            for row in rows:
                yield row, self._paint(batch, row, device, progress, None)
            return
        yield from self._paint_in_threads(batch, rows, progress)

    def _paint(self, batch: Batch, row: Row, device: str | None, progress: Progress | None,
               stop: threading.Event | None) -> Outcome:
        row.state = RUNNING
        options = {**batch.options, **row.options}
        if device is not None and row.settings["device"] == "auto":
            options["device"] = device

        def on_step(it: Iterate) -> None:
            if stop is not None and stop.is_set():
                raise _Stop
            if progress is not None:
                progress(row, it.progress)

        ran_on = {"host": socket.gethostname(), "pid": os.getpid()}
        try:
            result = stylize(row.content, list(row.styles), cache=self.cache, callback=on_step,
                             **_tuples(options))
        except BrushworkError as e:
            return Outcome(None, str(e), ran_on)
        except (MemoryError, RuntimeError) as e:
            oom = out_of_memory(e)
            if oom is None:
                raise
            return Outcome(None, str(oom), ran_on)
        return Outcome(result, None, {**ran_on, "device": result.device})

    def _paint_in_threads(self, batch: Batch, rows: Sequence[Row],
                          progress: Progress | None) -> Iterator[tuple[Row, Outcome]]:
        todo: queue.Queue[Row] = queue.Queue()
        for row in rows:
            todo.put(row)
        done: queue.Queue[tuple[Row, Outcome] | BaseException | None] = queue.Queue()
        stop = threading.Event()

        def worker(device: str) -> None:
            try:
                while not stop.is_set():
                    try:
                        row = todo.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        done.put((row, self._paint(batch, row, device, progress, stop)))
                    except _Stop:
                        break
            except BaseException as e:  # handed to the main thread, which re-raises it
                done.put(e)
            finally:
                done.put(None)

        threads = [threading.Thread(target=worker, args=(d,), daemon=True,
                                    name=f"brushwork-batch-{d}") for d in self.devices]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = done.get(timeout=0.2)  # a timeout, so Ctrl-C reaches this thread
                except queue.Empty:
                    continue
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for t in threads:
                t.join()


def local_devices() -> list[str]:
    """One worker per CUDA GPU where there are several; else none named (one worker,
    each row's device setting decides)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] if n > 1 else []


def run(batch: Batch, backend: Backend | None = None, *, force: bool = False,
        progress: Progress | None = None, on_row: Callable[[Row], None] | None = None) -> Batch:
    """Paint the batch's pending rows (after :func:`check`) with ``backend`` (here by
    default), writing each picture atomically as it arrives, with its settings, inputs and
    where it ran inside, and ``index.json`` as they finish (at most once a second, and at
    the end).  A failed picture is recorded with
    its error and the others go on.  Ctrl-C raises :class:`BatchInterrupted` once the
    index says which rows finished; a rerun then paints the rest."""
    backend = backend or LocalBackend()
    batch.backend = backend.describe()
    batch.interrupted = False
    todo = [row for row in batch.rows if row.state == PENDING]
    batch.directory.mkdir(parents=True, exist_ok=True)
    write_index(batch)
    written = time.monotonic()
    try:
        for row, outcome in backend.paint(batch, todo, progress):
            record(batch, row, outcome, force=force)
            # Each picture carries its own record, so the index may lag a little: it is
            # rewritten whole, which for a batch of thousands on many machines would
            # otherwise cost the driver more than the pictures do.
            if time.monotonic() - written >= INDEX_EVERY_S:
                write_index(batch)
                written = time.monotonic()
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        for row in todo:
            if row.state == RUNNING:
                row.state = INTERRUPTED
        batch.interrupted = True
        raise BatchInterrupted(batch) from None
    finally:
        write_index(batch)
    return batch


def record(batch: Batch, row: Row, outcome: Outcome, *, force: bool = False) -> None:
    """Write a finished row's picture (or note its error) and update the row."""
    row.ran_on = outcome.ran_on
    result = outcome.result
    if result is None:
        row.state, row.error = FAILED, " ".join((outcome.error or "failed").split())
        return
    # The same metadata whichever backend painted it: the paths and settings the row asked
    # for (a worker may have read the inputs from bytes, or its own copy of a model file).
    result.inputs = {"content": row.content, "style": list(row.styles)}
    result.settings = dict(row.settings)
    path = batch.path_of(row)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path, force=force,
                    extra={"batch": {"digests": row.digests, "ran_on": outcome.ran_on,
                                     "row": row.number}})
    except (BrushworkError, OSError) as e:
        row.state, row.error = FAILED, f"could not write the picture: {e}"
        return
    row.state, row.error = DONE, None
    row.losses, row.elapsed = dict(result.losses), result.elapsed


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch; ``.batch`` says which rows finished."""

    def __init__(self, batch: Batch) -> None:
        super().__init__("interrupted")
        self.batch = batch


# ---------------------------------------------------------------- index and sheet

def describe(batch: Batch) -> dict[str, Any]:
    """index.json: the batch's options, its backend, and every row's state."""
    return {"brushwork_batch": __version__, "plan": batch.source,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backend": batch.backend, "options": _lists(batch.options),
            "interrupted": batch.interrupted, "counts": batch.counts(),
            "rows": [row.describe() for row in batch.rows]}


def write_index(batch: Batch) -> Path:
    return save_text(json.dumps(describe(batch), indent=1) + "\n",
                     batch.directory / INDEX, force=True)


def contact_sheet(batch: Batch, *, thumb: int = 192) -> Image.Image:
    """The batch's pictures, photos down and paintings across; a failed row's cell holds
    its error."""
    from .sweep import grid_sheet

    photos = list(dict.fromkeys(row.content for row in batch.rows))
    paintings = list(dict.fromkeys(row.styles for row in batch.rows))
    pics: list[list[Image.Image | None]] = [[None] * len(paintings) for _ in photos]
    notes: list[list[str | None]] = [[None] * len(paintings) for _ in photos]
    for row in batch.rows:
        r, c = photos.index(row.content), paintings.index(row.styles)
        notes[r][c] = row.error
        path = batch.path_of(row)
        if row.state in (DONE, SKIPPED) and path.is_file():
            try:
                with Image.open(path) as im:
                    im.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
                    pics[r][c] = im.convert("RGB")
            except OSError as e:
                notes[r][c] = f"cannot read {row.output}: {e}"
    size = batch.options.get("size", Settings().size)
    title = (f"{_count(len(photos), 'photo')} x {_count(len(paintings), 'painting')}, "
             f"{size} px"
             + (" (interrupted)" if batch.interrupted else ""))
    return grid_sheet(pics, [Path(p).name for p in photos],
                      ["+".join(Path(s).name for s in styles) for styles in paintings],
                      title=title, notes=notes, thumb=thumb)


def write_sheet(batch: Batch) -> Path:
    return save_image(contact_sheet(batch), batch.directory / SHEET, force=True,
                      metadata={"brushwork_batch": describe(batch)})


# ---------------------------------------------------------------- the whole job

def paint(directory: str | os.PathLike[str], *, content: Sequence[str] = (),
          style: Sequence[str] = (), plan: str | os.PathLike[str] | None = None,
          ray: str | bool | None = None, cpus_per_task: int | None = None,
          force: bool = False, sheet: bool = False,
          on_start: Callable[[Batch], None] | None = None, progress: Progress | None = None,
          on_row: Callable[[Row], None] | None = None,
          log: Callable[[str], None] | None = None, **options: Any) -> Batch:
    """Plan, check and paint a batch into ``directory``: every photo in ``content`` with
    every painting in ``style`` (files or folders), or the rows of ``plan``; ``options``
    (stylize's) apply to every row unless it says otherwise.

    ``ray``: True for a Ray cluster started here, an address (``HOST:PORT``,
    ``ray://HOST:PORT``, ``auto``) to join one; each task then asks for ``cpus_per_task``
    CPUs (default: all of the smallest node's).  Otherwise the pictures are painted here.
    ``on_start`` sees the checked batch before the first picture; ``progress`` and
    ``on_row`` are :func:`run`'s.  With ``sheet``, ``directory/sheet.png`` shows the
    pictures, also after Ctrl-C."""
    if plan is not None and (content or style):
        raise BrushworkError("give a plan file, or content and style paths, not both")
    if cpus_per_task is not None and (ray is None or ray is False):
        raise BrushworkError("cpus per task is a Ray setting; it needs --ray")
    batch = (from_plan_file(plan, directory, **options) if plan is not None
             else grid(content, style, directory, **options))
    cache = Cache()
    backend: Backend
    if ray is not None and ray is not False:
        from .batch_ray import RayBackend

        backend = RayBackend(address=None if ray is True else str(ray),
                             cpus_per_task=cpus_per_task)
    else:
        backend = LocalBackend(cache=cache)
    try:
        check(batch, cache=cache, force=force, backend=backend, sheet=sheet, log=log)
        if on_start is not None:
            on_start(batch)
        try:
            run(batch, backend, force=force, progress=progress, on_row=on_row)
        finally:
            if sheet:
                write_sheet(batch)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return batch


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _lists(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


__all__ = ["Batch", "Row", "Outcome", "PlanError", "BatchInterrupted", "LocalBackend",
           "grid", "from_plan_file", "check", "run", "record", "paint", "describe",
           "write_index", "contact_sheet", "write_sheet", "image_files", "output_name"]
