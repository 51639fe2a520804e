"""What a batch paints: every photo times every painting (:func:`grid`), or the rows of a
CSV or JSON Lines plan file (:func:`from_plan_file`), as :class:`Row` s of a :class:`Batch`.
Problems found while reading a plan stay on their row for :func:`brushwork.batch.check`."""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from brushwork.engine.settings import (
    OptionSpec,
    Settings,
    json_options,
    option_specs,
    parse_list,
)
from brushwork.errors import BrushworkError
from brushwork.io.images import INPUT_FORMATS, INPUT_FORMATS_TEXT

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
# Options naming input files: in a plan, relative ones are taken from the plan's folder,
# as its photos and paintings are.  (init may also be "content" or "noise".)
PATH_OPTIONS = ("init", "style_masks", "region_map")


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
                "options": json_options(self.options), "state": self.state, "losses": self.losses,
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
    # How the batch's records (index.json, the sheet, each picture's metadata) name a file
    # it reads (a photo, a painting, a model's weights), by its path; unlisted: the path.
    # The studio names its uploads and models so, keeping the server's paths out of them.
    names: dict[str, str] = field(default_factory=dict)

    def path_of(self, row: Row) -> Path:
        return self.directory / row.output

    def name_of(self, path: str) -> str:
        return self.names.get(path, path)

    def recorded_settings(self, row: Row) -> dict[str, Any]:
        """The row's settings as its picture records them (its model named)."""
        out = dict(row.settings)
        if isinstance(out.get("model"), str):
            out["model"] = self.name_of(out["model"])
        return out

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
    out: list[tuple[str, dict[str, Any]]] = []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # a cell over csv's field limit (128 KiB), a stray quote, ...
            # The reader cannot go on past it, and the rows after it cannot be trusted.
            out.append((f"{name} line {reader.reader.line_num}",
                        {"__problem__": f"cannot be read as CSV ({e})"}))
            break
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
        except RecursionError:
            out.append((where, {"__problem__": "is JSON nested too deeply"}))
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
        where += (f" ({printable(Path(content).name)} x "
                  f"{'+'.join(printable(Path(s).name) for s in styles)})")
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
            options[spec.name] = _from_text(spec, value) if kind == "csv" else \
                _from_json(spec, value)
        except ValueError as e:
            problems.append(f"{where}: {spec.name}: {e}")
    options = Settings.normalise(options)  # a JSON line's lists as the settings' tuples
    for name in PATH_OPTIONS:
        value = options.get(name)
        if isinstance(value, str) and not (name == "init" and value in ("content", "noise")):
            options[name] = _relative_to(base, value)
        elif isinstance(value, tuple):
            options[name] = tuple(_relative_to(base, v) for v in value)
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


def printable(text: str) -> str:
    """``text`` with its control characters (a newline, a NUL) written as escapes, so a
    message naming it stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_JSON_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
               "str": "text", "strs": "a list of texts", "floats": "a list of numbers"}


def _from_json(spec: OptionSpec, value: Any) -> Any:
    """A JSON line's value for the option, if it is of the option's kind (a list option
    may also be given as a CSV cell would give it: ``"relu1_1, relu2_1"``)."""
    if value is None and spec.optional:
        return None

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": number,
          "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "strs": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
          "floats": lambda v: isinstance(v, list) and all(number(x) for x in v),
          }[spec.kind]
    if spec.kind in ("strs", "floats") and isinstance(value, str):
        return _from_text(spec, value)
    if not ok(value):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"expected {_JSON_KINDS[spec.kind]}, got {printable(shown)}")
    return value


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
            return parse_list(text)
        if spec.kind == "floats":
            return parse_list(text, float)
    except ValueError:
        what = {"int": "a whole number", "float": "a number"}.get(spec.kind, "numbers")
        raise ValueError(f"expected {what}, got {text!r}") from None
    return text
