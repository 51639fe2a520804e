"""The check of a whole batch before any picture is painted: options, every input image,
each model and its layers, the outputs, the backend; every problem one line naming its
row.  Rows whose picture is already there with the same settings and inputs are skipped."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from PIL import Image

from brushwork.batch.plan import (
    INDEX,
    MAX_SHEET_CELLS,
    PENDING,
    SHEET,
    SKIPPED,
    Batch,
    PlanError,
    Row,
    printable,
)
from brushwork.engine.cache import Cache
from brushwork.engine.network import check_layers
from brushwork.engine.settings import Settings
from brushwork.errors import BrushworkError
from brushwork.io.images import (
    OUTPUT_FORMATS,
    check_bit_depth,
    check_output_path,
    check_side_file,
    load_image,
    read_metadata,
)
from brushwork.io.masks import load_masks

if TYPE_CHECKING:
    from brushwork.batch.painting import Backend

# The longest output name a row may give, in bytes: each file or folder name leaves room
# under the usual 255 for the temporary name a picture is written to first
# (".NAME.XXXXXXXX.png") and a sidecar's (".NAME.json.XXXXXXXX.json").
MAX_OUTPUT_PART_BYTES = 200
MAX_OUTPUT_BYTES = 1024

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
    """Every input decodes (each file once per size limit), and its digest for the rows;
    a row's masks or region map are read as the run will read them, against its photo."""
    problems = []
    seen: dict[tuple[str, str, int], tuple[str, tuple[int, int]] | BrushworkError] = {}
    regions: dict[tuple[Any, ...], BrushworkError | None] = {}
    hashes: dict[str, str | BrushworkError] = {}

    def decode(path: str, role: str, limit: int) -> tuple[str, tuple[int, int]]:
        """The file's digest and its picture's size, once per file, role and limit."""
        key = (path, role, limit)
        if key not in seen:
            try:
                size = load_image(path, role=role, max_pixels=limit).size
                seen[key] = (file_digest(path), size)
            except (BrushworkError, OSError, ValueError) as e:
                seen[key] = e if isinstance(e, BrushworkError) else BrushworkError(str(e))
        found = seen[key]
        if isinstance(found, BrushworkError):
            raise found
        return found

    def digest(path: str, role: str, limit: int) -> str:
        return decode(path, role, limit)[0]

    def hashed(path: str) -> str:
        """The digest of a file that has been read already (a mask)."""
        if path not in hashes:
            try:
                hashes[path] = file_digest(path)
            except OSError as e:
                hashes[path] = BrushworkError(f"'{path}' cannot be read ({e.strerror or e})")
        found = hashes[path]
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
            masks, region_map = row.settings["style_masks"], row.settings["region_map"]
            if masks is not None or region_map is not None:
                _check_regions(row, decode(row.content, "content", limit)[1], regions)
                if masks is not None:
                    row.digests["style_masks"] = [hashed(m) for m in masks]
                if region_map is not None:
                    row.digests["region_map"] = hashed(region_map)
        except BrushworkError as e:
            problems.append(f"{row.where}: {e}")
    return problems


def _check_regions(row: Row, photo_size: tuple[int, int],
                   seen: dict[tuple[Any, ...], BrushworkError | None]) -> None:
    """The row's masks or region map as stylize reads them (their count, shape, colours),
    once per photo size and masks."""
    s = row.settings
    key = (photo_size, len(row.styles), s["max_pixels"], _frozen(s["style_masks"]),
           s["region_map"], _frozen(s["region_colors"]))
    if key not in seen:
        seen[key] = None
        try:
            # Only the photo's size matters to the masks: a blank one stands in for it.
            load_masks(Settings.from_options(s), Image.new("1", photo_size), len(row.styles))
        except BrushworkError as e:
            seen[key] = e
        except (OSError, ValueError) as e:
            seen[key] = BrushworkError(str(e))
    found = seen[key]
    if found is not None:
        raise found


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


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
    # Outputs compared where they land, links followed: two rows must not write one file
    # through a linked subfolder, nor a row write outside the folder or over its index.
    root = Path(os.path.realpath(d))
    own = {Path(os.path.realpath(d / INDEX)), Path(os.path.realpath(d / SHEET))}
    taken: dict[Path, Row] = {}
    for row in batch.rows:
        if not row.output:
            continue
        bad_name = _bad_output_name(row.output)
        if bad_name:
            problems.append(f"{row.where}: output {bad_name}")
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
        lands = Path(os.path.realpath(d / rel))
        if str(rel) in (INDEX, SHEET) or lands in own:
            problems.append(f"{row.where}: output '{row.output}' is the batch's own file")
            continue
        if not lands.is_relative_to(root):
            problems.append(f"{row.where}: output '{row.output}' leads outside the output "
                            f"folder, to '{printable(str(lands))}'")
            continue
        first = taken.setdefault(lands, row)
        if first is not row:
            through = "" if first.output == row.output else \
                f" (as '{first.output}', links followed)"
            problems.append(f"{row.where}: writes '{row.output}', as {first.where} "
                            f"does{through}")
            continue
        problems += _check_output_file(batch, row, force)
    return problems


def _bad_output_name(output: str) -> str | None:
    """What is wrong with an output name that no file system takes (or that a message
    naming it could not show on one line), or None."""
    shown = printable(output if len(output) <= 60 else output[:57] + "...")
    control = next((c for c in output if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return (f"'{shown}' holds a control character ({repr(control)[1:-1]}), which a file "
                "name cannot hold")
    parts = [p for p in output.replace(os.sep, "/").split("/") if p]
    longest = max((len(os.fsencode(p)) for p in parts), default=0)
    if longest > MAX_OUTPUT_PART_BYTES:
        return (f"'{shown}' has a name of {longest} bytes; a file or folder name is at "
                f"most {MAX_OUTPUT_PART_BYTES}")
    if len(os.fsencode(output)) > MAX_OUTPUT_BYTES:
        return f"'{shown}' is {len(os.fsencode(output))} bytes long; at most {MAX_OUTPUT_BYTES}"
    return None


def _check_output_file(batch: Batch, row: Row, force: bool) -> list[str]:
    """The picture can be written (links followed, folders in the way refused); one that
    is there already is fine when it is this row's, else it needs ``force``."""
    path = batch.path_of(row)
    try:  # a 16-bit row needs a format that holds it, checked before anything paints
        check_bit_depth(int(row.settings.get("bit_depth", 8)),
                        OUTPUT_FORMATS[path.suffix.lower()], f"output '{row.output}'")
    except BrushworkError as e:
        return [f"{row.where}: {e}"]
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
    if _done_before(batch, path, row) is None:
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


def _done_before(batch: Batch, path: Path, row: Row) -> dict[str, Any] | None:
    """The metadata of ``path`` if it is this row's finished picture: same settings, same
    input files (by content), not interrupted; else None."""
    try:
        meta = read_metadata(path)
    except BrushworkError:
        return None
    if not meta or meta.get("interrupted") or \
            meta.get("settings") != batch.recorded_settings(row):
        return None
    if (meta.get("batch") or {}).get("digests") != row.digests:
        return None
    return meta


def _mark_if_done(batch: Batch, row: Row) -> None:
    path = batch.path_of(row)
    meta = _done_before(batch, path, row) if path.is_file() else None
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
