"""SVG chart: weekly hazard reports per building under the sheds' utilisation, same weeks."""

from __future__ import annotations

import math

from markupsafe import escape

from chargeshed.safety.stats import Trend

WIDTH = 760
LABEL_W = 88
TOP_H = 110
ROW_H = 34
AXIS_H = 28
GREEN = "#0a7d32"
RED = "#b3261e"
GRID = "#d6d8d2"
INK = "#111"
MUTED = "#555"


def _nice_max(value: float, minimum: float) -> float:
    """A round upper bound for a scale."""
    value = max(value, minimum)
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _text(
    x: float, y: float, content: str, *, size: int = 12, anchor: str = "start", fill: str = INK, weight: str = "normal"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
        f'font-weight="{weight}">{escape(content)}</text>'
    )


def trend_svg(trend: Trend, *, title: str, utilisation_label: str, building_label, no_reports_label: str) -> str:
    """The chart as an SVG document. `building_label(n)` names a building; all text is escaped."""
    weeks = len(trend.weeks)
    rows = [(number, counts) for number, counts in sorted(trend.reports.items()) if any(counts)]
    height = 30 + TOP_H + max(1, len(rows)) * ROW_H + AXIS_H
    x0, x1 = LABEL_W, WIDTH - 12
    col = (x1 - x0) / max(1, weeks)
    bar = col * 0.62
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" font-family="system-ui, \'Noto Sans CJK SC\', sans-serif" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>',
        _text(8, 20, title, size=14, weight="bold"),
    ]
    # Utilisation panel.
    top = 30
    scale = _nice_max(max(trend.utilisation or [0]), 10)
    parts.append(_text(8, top + 14, utilisation_label, size=12, fill=GREEN, weight="bold"))
    base = top + TOP_H - 14
    usable = TOP_H - 48
    parts.append(f'<line x1="{x0}" y1="{base}" x2="{x1}" y2="{base}" stroke="{GRID}"/>')
    parts.append(_text(x0 - 4, base - usable + 4, f"{scale:g}%", size=10, anchor="end", fill=MUTED))
    for i, value in enumerate(trend.utilisation):
        h = usable * value / scale if scale else 0
        x = x0 + i * col + (col - bar) / 2
        parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{GREEN}"/>')
        parts.append(_text(x + bar / 2, base - h - 3, f"{value:.0f}%", size=10, anchor="middle", fill=GREEN))
    # One row of report bars per building that had reports.
    peak = max([max(c) for _n, c in rows] or [1])
    y = top + TOP_H
    if not rows:
        parts.append(_text(x0, y + ROW_H / 2 + 4, no_reports_label, size=12, fill=MUTED))
        y += ROW_H
    for number, counts in rows:
        base = y + ROW_H - 6
        parts.append(f'<line x1="{x0}" y1="{base}" x2="{x1}" y2="{base}" stroke="{GRID}"/>')
        parts.append(_text(x0 - 8, base - 6, building_label(number), size=12, anchor="end"))
        for i, count in enumerate(counts):
            if not count:
                continue
            h = (ROW_H - 16) * count / peak
            x = x0 + i * col + (col - bar) / 2
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{RED}"/>')
            parts.append(_text(x + bar + 2, base - 2, str(count), size=10, fill=RED))
        y += ROW_H
    # Week axis.
    step = 1 if weeks <= 13 else 2
    for i, start in enumerate(trend.weeks):
        if i % step == 0:
            parts.append(
                _text(
                    x0 + i * col + col / 2,
                    y + 16,
                    f"{start.month}/{start.day}",
                    size=10,
                    anchor="middle",
                    fill=MUTED,
                )
            )
    parts.append("</svg>")
    return "\n".join(parts)
