"""Many pictures: every photo times every painting, or the rows of a plan file.

A batch is planned (:func:`grid`, :func:`from_plan_file`), checked whole before any
picture is painted (:func:`check`: every problem named by its row, one line each), then
painted by a backend, here (:class:`LocalBackend`: one picture at a time, or one per GPU)
or on a Ray cluster (:class:`brushwork.batch.ray.RayBackend`), while :func:`run` writes each
result as it arrives, with its settings inside, and keeps ``DIR/index.json`` up to date.
A rerun skips the pictures already there with the same settings and inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from brushwork.batch.check import check, file_digest
from brushwork.batch.index import contact_sheet, describe, write_index, write_sheet
from brushwork.batch.painting import (
    Backend,
    BatchInterrupted,
    LocalBackend,
    Outcome,
    Progress,
    local_devices,
    record,
    run,
)
from brushwork.batch.plan import (
    DONE,
    FAILED,
    INDEX,
    INTERRUPTED,
    PENDING,
    RUNNING,
    SHEET,
    SKIPPED,
    Batch,
    PlanError,
    Row,
    from_plan_file,
    grid,
    image_files,
    output_name,
)
from brushwork.engine.cache import Cache
from brushwork.errors import BrushworkError


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
        from brushwork.batch.ray import RayBackend

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


__all__ = ["Batch", "Row", "Outcome", "PlanError", "BatchInterrupted", "LocalBackend",
           "Backend", "Progress", "grid", "from_plan_file", "check", "run", "record", "paint",
           "describe", "write_index", "contact_sheet", "write_sheet", "image_files",
           "output_name", "file_digest", "local_devices", "DONE", "FAILED", "INDEX",
           "INTERRUPTED", "PENDING", "RUNNING", "SHEET", "SKIPPED"]
