"""Small inline SVG charts, drawn on the server (no charting library, nothing fetched).

Each chart is a string of SVG markup. Its look comes from the page's stylesheet through
classes (``line``, ``line-by``, ``area``, ``grid``, ``mark``…), so nothing here carries a
``style`` attribute and the page's Content-Security-Policy needs no inline-style exception.
Meaning is never carried by colour alone: lines differ by dash pattern and each has a text
label at its end; the numbers themselves are in tables beside every chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Line", "bar", "panel", "strip"]


@dataclass(frozen=True)
class Line:
    """One series of a panel.

    Attributes
    ----------
    label : text drawn at the line's end ("at", "by", or a value)
    points : (x, y) in data units, y a probability in [0, 1], x increasing
    kind : its CSS class: ``line`` (solid) or ``line-by`` (dashed)
    area : shade the area under it
    dots : a dot at every point (one point per published fit, say)

    """

    label: str
    points: tuple[tuple[float, float], ...]
    kind: str = "line"
    area: bool = False
    dots: bool = False


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _spread(wanted: list[float], gap: float, low: float, high: float) -> list[float]:
    """Label positions near ``wanted``, at least ``gap`` apart, inside [low, high]."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [0.0] * len(wanted)
    last = low - gap
    for i in order:
        placed[i] = max(wanted[i], last + gap)
        last = placed[i]
    overflow = last - high
    if overflow > 0:
        for i in order:
            placed[i] = max(low, placed[i] - overflow)
    return placed


def panel(lines: Sequence[Line], *, x_range: tuple[float, float],
          x_ticks: Sequence[tuple[float, str]], marks: Sequence[float] = (),
          title: str, desc: str, ident: str, width: int = 270, height: int = 140) -> str:
    """A small chart of probabilities (y from 0 to 1) against ``x``.

    Parameters
    ----------
    lines : sequence of Line
        The series, each labelled at its end.
    x_range : (float, float)
        The x domain; a single value (min == max) puts everything in the middle.
    x_ticks : sequence of (float, str)
        Labels under the axis at those x.
    marks : sequence of float
        x positions marked with a small triangle under the plot (observations logged).
    title, desc : str
        The SVG's accessible name and description.
    ident : str
        A prefix for the ids of its title and description (unique in the page).
    width, height : int
        Its viewBox; it scales to the width of its container.

    Returns
    -------
    str
        The ``<svg>`` element.

    """
    left, right, top, bottom = 26, 30, 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    x_min, x_max = x_range

    def x_of(x: float) -> float:
        if x_max <= x_min:
            return left + plot_w / 2
        return left + (x - x_min) / (x_max - x_min) * plot_w

    def y_of(p: float) -> float:
        return top + (1.0 - min(max(p, 0.0), 1.0)) * plot_h

    base = y_of(0.0)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="{ident}-t {ident}-d" focusable="false">',
           f'<title id="{ident}-t">{escape(title)}</title>',
           f'<desc id="{ident}-d">{escape(desc)}</desc>']
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _n(y_of(p))
        out.append(f'<line class="grid{" grid-major" if p in (0.0, 1.0) else ""}" '
                   f'x1="{left}" x2="{left + plot_w}" y1="{y}" y2="{y}"/>')
        if p in (0.0, 0.5, 1.0):
            out.append(f'<text class="tick" x="{left - 4}" y="{_n(y_of(p) + 4)}" '
                       f'text-anchor="end">{p:g}</text>')
    for i, (x, label) in enumerate(x_ticks):
        anchor = "middle"
        if len(x_ticks) > 1 and i == 0:
            anchor = "start"
        elif len(x_ticks) > 1 and i == len(x_ticks) - 1:
            anchor = "end"
        out.append(f'<text class="tick" x="{_n(x_of(x))}" y="{_n(base + 14)}" '
                   f'text-anchor="{anchor}">{escape(label)}</text>')
    for x in sorted(set(marks)):
        cx, cy = x_of(x), base + 20
        out.append(f'<path class="mark" d="M{_n(cx)} {_n(cy)}l-3.5 6h7z"/>')
    ends: list[tuple[Line, float, float]] = []
    for line in lines:
        if not line.points:
            continue
        xy = [(x_of(x), y_of(y)) for x, y in line.points]
        path = " ".join(f"{'M' if i == 0 else 'L'}{_n(px)} {_n(py)}"
                        for i, (px, py) in enumerate(xy))
        if line.area and len(xy) > 1:
            out.append(f'<path class="area" d="{path} L{_n(xy[-1][0])} {_n(base)} '
                       f'L{_n(xy[0][0])} {_n(base)}Z"/>')
        if len(xy) > 1:
            out.append(f'<path class="{line.kind}" d="{path}"/>')
        if line.dots or len(xy) == 1:
            out.extend(f'<circle class="dot" cx="{_n(px)}" cy="{_n(py)}" r="2.6"/>'
                       for px, py in xy)
        ends.append((line, *xy[-1]))
    placed = _spread([y + 4 for _, _, y in ends], 11.0, top + 4, base + 4)
    for (line, x, _), y in zip(ends, placed, strict=True):
        out.append(f'<text class="end-label" x="{_n(x + 5)}" y="{_n(y)}">'
                   f'{escape(line.label)}</text>')
    out.append("</svg>")
    return "".join(out)


def strip(low: int | None, median: int | None, high: int | None, steps: int) -> str:
    """An interval on a timeline of ``steps`` periods: ``low``–``high`` with a median tick.

    A missing end is past the horizon: the bar runs to the end with an arrow. A missing
    ``low`` draws the bare timeline. Decorative (``aria-hidden``): the text beside it says it.
    """
    width, height, pad = 120, 16, 4
    span = width - 2 * pad

    def x_of(step: int) -> float:
        return pad + (step / steps * span if steps > 0 else 0.0)

    out = [f'<svg class="strip" viewBox="0 0 {width} {height}" aria-hidden="true" '
           f'focusable="false"><line class="track" x1="{pad}" x2="{width - pad}" y1="8" '
           'y2="8"/>']
    if low is not None:
        x0 = x_of(low)
        x1 = x_of(high) if high is not None else width - pad
        out.append(f'<rect class="span" x="{_n(x0)}" y="4" width="{_n(max(x1 - x0, 2.0))}" '
                   'height="8" rx="2"/>')
        if high is None:
            out.append(f'<path class="span" d="M{width - pad} 2l4 6l-4 6z"/>')
    if median is not None:
        xm = _n(x_of(median))
        out.append(f'<line class="median" x1="{xm}" x2="{xm}" y1="1" y2="15"/>')
    out.append("</svg>")
    return "".join(out)


def bar(fraction: float | None) -> str:
    """A horizontal bar of ``fraction`` (0–1): decorative, the number is printed beside it."""
    width, height = 100, 10
    filled = 0.0 if fraction is None else min(max(fraction, 0.0), 1.0) * width
    return (f'<svg class="bar" viewBox="0 0 {width} {height}" aria-hidden="true" '
            f'focusable="false"><rect class="bar-track" width="{width}" height="{height}" '
            f'rx="2"/><rect class="bar-fill" width="{_n(filled)}" height="{height}" rx="2"/>'
            "</svg>")
