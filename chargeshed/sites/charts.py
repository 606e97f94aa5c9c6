"""Server-rendered SVG charts: no chart library in the browser, readable on a phone, printable.

Charts are drawn in a narrow coordinate system (about a phone's width in CSS pixels), so text
stays legible when the SVG is scaled to the screen. Every chart carries a <title> and an
aria-label, and values are printed as text, not only shown as length or colour.
All text passed in is escaped here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

INK = "#111"
MUTED = "#555"
GRID = "#d6d8d2"
BAR = "#0b57d0"
# Light to dark; text switches to white on the two darkest steps.
HEAT = ("#f4f5f2", "#d9efe0", "#a8dcb8", "#6cc08c", "#2e9a5c", "#0a6b30")


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" font-family="system-ui, sans-serif">'
        f"<title>{escape(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(
    x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", fill: str = INK, weight: str = "normal"
) -> str:
    bold = ' font-weight="700"' if weight == "bold" else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{bold}>'
        f"{escape(text)}</text>"
    )


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above `value` (for axis tops)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def bar_chart(
    points: Sequence[tuple[str, float]], label: str, fmt: Callable[[float], str], *, width: int = 360, height: int = 200
) -> Markup:
    """Vertical bars, one per point (label, value), with a labelled axis and the top value printed."""
    left, right, top, bottom = 44, 8, 12, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    # Four equal, round steps: 0, 5, 10, 15, 20 rather than 0, 12.5, 25, ...
    ceiling = 4 * nice_ceiling(max((v for _, v in points), default=0) / 4)
    body = []
    for i in range(5):
        value = ceiling * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(_text(left - 4, y + 4, fmt(value), size=10, anchor="end", fill=MUTED))
    n = max(1, len(points))
    slot = plot_w / n
    every = max(1, round(n / 6))
    peak = max(range(len(points)), key=lambda i: points[i][1], default=None)
    for i, (name, value) in enumerate(points):
        h = plot_h * value / ceiling
        x = left + i * slot + slot * 0.15
        body.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{BAR}"><title>{escape(name)}: {escape(fmt(value))}</title></rect>'
        )
        if (i % every == 0 and n - 1 - i >= every * 0.75) or i == n - 1:
            body.append(_text(left + i * slot + slot / 2, height - 6, name, size=10, anchor="middle", fill=MUTED))
    if peak is not None and points[peak][1] > 0:
        x = left + peak * slot + slot / 2
        y = top + plot_h - plot_h * points[peak][1] / ceiling
        anchor = "end" if peak > n * 0.7 else "start" if peak < n * 0.3 else "middle"
        body.append(_text(x, max(top + 9, y - 3), fmt(points[peak][1]), size=11, anchor=anchor, weight="bold"))
    return _svg(width, height, label, body)


def share_bars(items: Sequence[tuple[str, int, float]], label: str, *, width: int = 360) -> Markup:
    """Horizontal bars for shares (name, count, percent), the figures written next to each bar."""
    row = 34
    height = max(1, len(items)) * row + 4
    bar_w = width - 92
    body = []
    for i, (name, count, pct) in enumerate(items):
        y = i * row + 2
        body.append(_text(0, y + 12, name, size=12))
        body.append(f'<rect x="0" y="{y + 17}" width="{bar_w}" height="11" fill="{GRID}"/>')
        body.append(f'<rect x="0" y="{y + 17}" width="{bar_w * pct / 100:.1f}" height="11" fill="{BAR}"/>')
        body.append(_text(width, y + 27, f"{pct:.0f}% ({count})", size=12, anchor="end", weight="bold"))
    return _svg(width, height, label, body)


def _heat_step(percent: float) -> int:
    if percent <= 0:
        return 0
    return min(len(HEAT) - 1, 1 + int(percent // 20))


def heatmap(percent: Callable[[int, int], float], day_names: Sequence[str], label: str) -> Markup:
    """Hour-of-week grid: days as columns, hours as rows (fits a phone upright); percent in each cell."""
    left, top, cell_w, cell_h = 26, 18, 44, 17
    width, height = left + 7 * cell_w + 2, top + 24 * cell_h + 2
    body = [
        _text(left + d * cell_w + cell_w / 2, 12, day_names[d], size=11, anchor="middle", weight="bold")
        for d in range(7)
    ]
    for h in range(24):
        y = top + h * cell_h
        body.append(_text(left - 4, y + 12.5, f"{h:02d}", size=10, anchor="end", fill=MUTED))
        for d in range(7):
            value = percent(d, h)
            step = _heat_step(value)
            x = left + d * cell_w
            tip = f"{escape(day_names[d])} {h:02d}:00 · {value:.0f}%"
            body.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{HEAT[step]}"><title>{tip}</title></rect>'
            )
            if value >= 0.5:
                body.append(
                    _text(
                        x + cell_w / 2,
                        y + 12.5,
                        f"{value:.0f}",
                        size=10,
                        anchor="middle",
                        fill="#fff" if step >= 4 else INK,
                    )
                )
    return _svg(width, height, label, body)


def heat_legend(label: str) -> Markup:
    """The colour steps of the heatmap with their ranges, in two rows (fits a phone)."""
    ranges = ("0", "1–19", "20–39", "40–59", "60–79", "80–100")
    body = []
    for i, (colour, text) in enumerate(zip(HEAT, ranges, strict=True)):
        x, y = (i % 3) * 96, (i // 3) * 20
        body.append(f'<rect x="{x}" y="{y + 2}" width="14" height="14" fill="{colour}" stroke="{GRID}"/>')
        body.append(_text(x + 19, y + 13, f"{text}%", size=12))
    return _svg(3 * 96, 40, label, body)
