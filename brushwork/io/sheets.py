"""Contact sheets: pictures in a labelled grid, typeset with Pillow (a sweep's sheet, a
batch's sheet, the bench's side-by-side pictures)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

THUMB_LONG_SIDE = 384  # cells larger than this are shown smaller on the sheet (saved full size)
MIN_THUMB = 192  # and smaller ones larger, so a quick low-resolution sweep stays legible


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, which matplotlib ships, so labels look the same everywhere."""
    from matplotlib import font_manager

    try:
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"),
                                     fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except (OSError, ValueError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str,
               font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top)  # whole pixels: they size the sheet


def grid_sheet(pics: Sequence[Sequence[Image.Image | None]], row_labels: Sequence[str],
               col_labels: Sequence[str], *, title: str = "",
               notes: Sequence[Sequence[str | None]] | None = None,
               thumb: int = THUMB_LONG_SIDE) -> Image.Image:
    """Pictures in a labelled grid (a sweep's contact sheet, a batch's sheet).

    Pictures are shown with a long side between MIN_THUMB and ``thumb``; a missing one
    is a grey box holding its note (an error, in red) or "not run".
    """
    sizes = [p.size for row in pics for p in row if p is not None]
    if not sizes:
        w, h = thumb, thumb * 3 // 4
    else:
        w, h = max(s[0] for s in sizes), max(s[1] for s in sizes)
        f = min(thumb, max(MIN_THUMB, max(w, h))) / max(w, h)
        w, h = max(1, round(w * f)), max(1, round(h * f))
    font, small, bold = _font(15), _font(12), _font(17)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    gap, pad = 8, 12
    n_rows, n_cols = len(pics), len(col_labels)
    cw = max([w] + [_text_size(probe, t, font)[0] + gap for t in col_labels])
    left = max([_text_size(probe, t, font)[0] for t in row_labels if t] + [0])
    left = left + 2 * pad if left else pad
    head = max([_text_size(probe, t, font)[1] for t in col_labels if t] + [0]) + 2 * pad
    title_w, title_h = _text_size(probe, title or "Ag", bold)
    title_h += 2 * pad
    width = max(left + n_cols * (cw + gap) + pad, title_w + 2 * pad)
    height = title_h + head + n_rows * (h + gap) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), title, fill="black", font=bold)
    for c, text in enumerate(col_labels):
        tw, _ = _text_size(draw, text, font)
        draw.text((left + c * (cw + gap) + (cw - tw) // 2, title_h + pad // 2), text,
                  fill="black", font=font)
    for r, text in enumerate(row_labels):
        _, th = _text_size(draw, text, font)
        draw.multiline_text((pad, title_h + head + r * (h + gap) + (h - th) // 2), text,
                            fill="black", font=font)
    for r, row in enumerate(pics):
        for c, pic in enumerate(row):
            x, y = left + c * (cw + gap) + (cw - w) // 2, title_h + head + r * (h + gap)
            if pic is not None:
                fw, fh = _fit(pic.size, (w, h))
                if pic.size != (fw, fh):
                    pic = pic.resize((fw, fh), Image.Resampling.LANCZOS)
                sheet.paste(pic, (x + (w - fw) // 2, y + (h - fh) // 2))
            else:
                note = notes[r][c] if notes is not None else None
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(235, 235, 235),
                               outline=(200, 200, 200))
                msg = _wrap(note or "not run", max(10, w // 8))
                colour = (150, 30, 30) if note else "grey"
                draw.multiline_text((x + 8, y + 8), msg, fill=colour, font=small)
    return sheet


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled to fit ``box`` keeping its shape; the box itself when the two differ
    only by rounding (a sweep's cells, all one size)."""
    (pw, ph), (w, h) = size, box
    s = min(w / pw, h / ph)
    fw, fh = max(1, round(pw * s)), max(1, round(ph * s))
    return (w, h) if abs(fw - w) <= 1 and abs(fh - h) <= 1 else (fw, fh)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:8])
