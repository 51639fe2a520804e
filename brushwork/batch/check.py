"""The check of a whole batch before any picture is painted: options, every input image,
each model and its layers, the outputs, the backend; every problem one line naming its
row.  Rows whose picture is already there with the same settings and inputs are skipped."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from brushwork.batch.plan import (
    INDEX,
    MAX_SHEET_CELLS,
    PENDING,
    SHEET,
    SKIPPED,
    Batch,
    PlanError,
    Row,
)
from brushwork.engine.cache import Cache
from brushwork.engine.network import check_layers
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.io.images import (
    OUTPUT_FORMATS,
    check_output_path,
    check_side_file,
    load_image,
    read_metadata,
)

if TYPE_CHECKING:
    from brushwork.batch.painting import Backend

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
            row.settings = Settings.from_options(batch.options, **row.options).to_dict()
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
