"""Loss-against-iteration plots (``--plot``), drawn with matplotlib's object API.

No pyplot: its global figure state is not safe from the studio's worker thread.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

TERMS = ("total", "style", "content", "tv", "structure", "matting")
COLOURS = {"total": "black", "style": "tab:red", "content": "tab:blue", "tv": "tab:green",
           "structure": "tab:purple", "matting": "tab:orange"}


def draw_losses(ax: Axes, history: Sequence[dict[str, float]], *, legend: bool = True) -> None:
    """Each weighted term against the step, on a log axis; dashed lines where a scale begins.

    Terms that are zero throughout (TV at weight 0) are left out. The losses of
    different pyramid scales are not comparable (more pixels, other targets), so
    the jumps at the dashed lines are expected.
    """
    steps = [h["step"] for h in history]
    totals = [h["total"] for h in history if h.get("total", 0) > 0 and math.isfinite(h["total"])]
    for term in TERMS:
        values = [h.get(term, 0.0) for h in history]
        if not any(v > 0 for v in values):
            continue
        # Log axes cannot show zeros; leave gaps there instead of distorting the line.
        shown = [v if v > 0 and math.isfinite(v) else float("nan") for v in values]
        ax.plot(steps, shown, label=term, color=COLOURS[term],
                linewidth=1.8 if term == "total" else 1.2)
    ax.set_yscale("log")
    if totals:
        # A term that starts at zero (content, from the photo) would stretch the axis
        # down by many decades; show four below the total's lowest point.
        ax.set_ylim(bottom=max(ax.get_ylim()[0], min(totals) * 1e-4))
    for prev, cur in itertools.pairwise(history):
        if cur.get("scale", 0) != prev.get("scale", 0):
            ax.axvline(cur["step"] - 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"scale {int(cur['scale']) + 1}", (cur["step"], 0),
                        xycoords=("data", "axes fraction"), xytext=(3, 4),
                        textcoords="offset points", fontsize=7, color="grey")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("weighted loss")
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.lines:
        ax.legend(fontsize=8, loc="best")


def figure_image(fig: Figure) -> Image.Image:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


def loss_plot(history: Sequence[dict[str, float]], *, title: str | None = None) -> Image.Image:
    """One run's losses as a picture."""
    fig = Figure(figsize=(7, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    draw_losses(ax, history)
    if title:
        ax.set_title(title, fontsize=10)
    return figure_image(fig)


def grid_plot(histories: Sequence[Sequence[Sequence[dict[str, float]] | None]],
              row_labels: Sequence[str], col_labels: Sequence[str]) -> Image.Image:
    """A sweep's losses, one small plot per cell, laid out like its contact sheet."""
    rows, cols = len(histories), max(len(r) for r in histories)
    fig = Figure(figsize=(2.6 * cols + 0.6, 2.1 * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            history = histories[r][c] if c < len(histories[r]) else None
            if history:
                draw_losses(ax, history, legend=(r == 0 and c == 0))
            else:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            if r != rows - 1:
                ax.set_xlabel("")
            if c != 0:
                ax.set_ylabel("")
            if r == 0 and col_labels[c]:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0 and row_labels[r]:
                ax.set_ylabel(f"{row_labels[r]}\nweighted loss", fontsize=8)
    return figure_image(fig)
