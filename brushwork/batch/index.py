"""What a batch leaves beside its pictures: index.json (every row's state, losses, time
and where it ran) and the contact sheet."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from brushwork._version import __version__
from brushwork.batch.plan import DONE, INDEX, SHEET, SKIPPED, Batch
from brushwork.engine.settings import Settings, json_options
from brushwork.io.images import save_image, save_text


def describe(batch: Batch) -> dict[str, Any]:
    """index.json: the batch's options, its backend, and every row's state."""
    return {"brushwork_batch": __version__, "plan": batch.source,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backend": batch.backend, "options": json_options(batch.options),
            "interrupted": batch.interrupted, "counts": batch.counts(),
            "rows": [row.describe() for row in batch.rows]}


def write_index(batch: Batch) -> Path:
    return save_text(json.dumps(describe(batch), indent=1) + "\n",
                     batch.directory / INDEX, force=True)


def contact_sheet(batch: Batch, *, thumb: int = 192) -> Image.Image:
    """The batch's pictures, photos down and paintings across; a failed row's cell holds
    its error."""
    from brushwork.io.sheets import grid_sheet

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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
