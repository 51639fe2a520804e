"""What a batch leaves beside its pictures: index.json (every row's state, losses, time
and where it ran) and the contact sheet."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from brushwork._version import __version__
from brushwork.batch.plan import DONE, INDEX, SHEET, SKIPPED, Batch, Row
from brushwork.engine.settings import Settings, json_options
from brushwork.io.images import save_image, save_text


def describe(batch: Batch) -> dict[str, Any]:
    """index.json: the batch's options, its backend, and every row's state."""
    options = json_options(batch.options)
    if isinstance(options.get("model"), str):
        options["model"] = batch.name_of(options["model"])
    rows = []
    for row in batch.rows:
        entry = row.describe()
        entry["content"] = batch.name_of(row.content)
        entry["styles"] = [batch.name_of(s) for s in row.styles]
        rows.append(entry)
    return {"brushwork_batch": __version__, "plan": batch.source,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backend": batch.backend, "options": options,
            "interrupted": batch.interrupted, "counts": batch.counts(), "rows": rows}


def write_index(batch: Batch) -> Path:
    return save_text(json.dumps(describe(batch), indent=1) + "\n",
                     batch.directory / INDEX, force=True)


def contact_sheet(batch: Batch, *, thumb: int = 192) -> Image.Image:
    """The batch's pictures, photos down and paintings across (a painting with a row's
    own options, such as a strength, is a column of its own); a failed row's cell holds
    its error."""
    from brushwork.io.sheets import grid_sheet

    def column(row: Row) -> tuple[tuple[str, ...], str]:
        return row.styles, _options_label(row.options)

    photos = list(dict.fromkeys(row.content for row in batch.rows))
    paintings = list(dict.fromkeys(column(row) for row in batch.rows))
    pics: list[list[Image.Image | None]] = [[None] * len(paintings) for _ in photos]
    notes: list[list[str | None]] = [[None] * len(paintings) for _ in photos]
    for row in batch.rows:
        r, c = photos.index(row.content), paintings.index(column(row))
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
    n_paintings = len({styles for styles, _ in paintings})
    title = (f"{_count(len(photos), 'photo')} x {_count(n_paintings, 'painting')}, "
             f"{size} px"
             + (" (interrupted)" if batch.interrupted else ""))
    return grid_sheet(pics, [_label(batch, p) for p in photos],
                      ["+".join(_label(batch, s) for s in styles) + (f", {own}" if own else "")
                       for styles, own in paintings],
                      title=title, notes=notes, thumb=thumb)


def _label(batch: Batch, path: str) -> str:
    return batch.names.get(path) or Path(path).name


def _options_label(options: dict[str, Any]) -> str:
    """A row's own options as a column label: ``strength 0.6``."""
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else
                     f"{k.replace('_', ' ')} {v}" for k, v in sorted(options.items()))


def write_sheet(batch: Batch) -> Path:
    return save_image(contact_sheet(batch), batch.directory / SHEET, force=True,
                      metadata={"brushwork_batch": describe(batch)})


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
