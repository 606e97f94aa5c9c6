"""The printable monthly safety summary (PDF) for the owners' committee. No personal data."""

from __future__ import annotations

import io
from datetime import datetime

from flask_babel import gettext as _
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import KeepTogether

from chargeshed.cells import neutral_text
from chargeshed.pdffonts import pdf_fonts
from chargeshed.safety import labels
from chargeshed.safety.stats import MonthSummary
from chargeshed.timeutil import to_local

GREEN = colors.HexColor("#0a7d32")
RED = colors.HexColor("#b3261e")
LINE = colors.HexColor("#d6d8d2")


def _font() -> str:
    """The embedded Noto Sans CJK subset (registered on first use, not at import)."""
    return pdf_fonts()[0]


def _styles() -> dict[str, ParagraphStyle]:
    font = _font()
    return {
        "title": ParagraphStyle("title", fontName=font, fontSize=17, leading=22, spaceAfter=4),
        "sub": ParagraphStyle("sub", fontName=font, fontSize=9.5, leading=13, textColor=colors.HexColor("#555")),
        "h2": ParagraphStyle(
            "h2", fontName=font, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=5, keepWithNext=1
        ),
        "body": ParagraphStyle("body", fontName=font, fontSize=9.5, leading=13),
        "cell": ParagraphStyle("cell", fontName=font, fontSize=9, leading=12),
    }


def _glyphs(text) -> str:
    """The text as drawn (kept as one place to adapt text to the font)."""
    return str(text)


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text (escaped for reportlab's mini-markup)."""
    return Paragraph(_glyphs(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), style)


def _table(rows: list[list], widths: list[float], styles: dict, header: bool = True) -> Table:
    # Table text is what gets copied into spreadsheets: never a formula there.
    cells = [[c if isinstance(c, Paragraph) else _p(neutral_text(c), styles["cell"]) for c in row] for row in rows]
    table = Table(cells, colWidths=widths, hAlign="LEFT", repeatRows=1 if header else 0)
    commands = [
        ("FONTNAME", (0, 0), (-1, -1), _font()),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, LINE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1ec")))
    table.setStyle(TableStyle(commands))
    return table


def _hours(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 48:
        return _("%(h)s hours", h=f"{value:.1f}")
    return _("%(d)s days", d=f"{value / 24:.1f}")


def _bar_chart(title: str, values: list[float], labels_: list[str], colour, width: float) -> Drawing:
    drawing = Drawing(width, 120)
    drawing.add(String(0, 108, _glyphs(title), fontName=_font(), fontSize=9.5, fillColor=colour))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 28, 18, width - 36, 80
    chart.data = [values or [0]]
    chart.categoryAxis.categoryNames = labels_
    chart.categoryAxis.labels.fontName = _font()
    chart.categoryAxis.labels.fontSize = 7.5
    chart.valueAxis.labels.fontName = _font()
    chart.valueAxis.labels.fontSize = 7.5
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = max(max(values or [0]) * 1.15, 4)
    chart.bars[0].fillColor = colour
    chart.bars[0].strokeColor = None
    chart.barLabelFormat = "%g"
    chart.barLabels.fontName = _font()
    chart.barLabels.fontSize = 7
    chart.barLabels.nudge = 6
    drawing.add(chart)
    return drawing


def render_pdf(summary: MonthSummary, site_name: str, generated_at: datetime) -> bytes:
    """The monthly summary as PDF bytes."""
    styles = _styles()
    buffer = io.BytesIO()
    month = _("%(year)s-%(month)02d", year=summary.year, month=summary.month)
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=_("Fire safety summary %(month)s", month=month),
        author=site_name,
        initialFontName=_font(),
    )
    width = A4[0] - 32 * mm
    story: list = [
        _p(_("%(site)s · Fire safety summary %(month)s", site=site_name, month=month), styles["title"]),
        _p(
            _(
                "For the owners' committee, the property company and the shed operator. Generated %(at)s. "
                "No personal data: places and case numbers only.",
                at=to_local(generated_at).strftime("%Y-%m-%d %H:%M"),
            ),
            styles["sub"],
        ),
        Spacer(1, 6),
    ]
    change = summary.reports - summary.previous_reports
    key = [
        [_("Figure"), _("This month")],
        [
            _("Hazard reports received"),
            _(
                "%(n)s (previous month %(p)s, %(c)s)",
                n=summary.reports,
                p=summary.previous_reports,
                c=f"{change:+d}",
            ),
        ],
        [_("Cases closed"), str(summary.closed)],
        [_("Median time from report to close"), _hours(summary.median_hours)],
        [_("Open at month end"), str(len(summary.open_at_end))],
        [_("Of these, past their deadline"), str(summary.overdue_at_end)],
        [_("Reminders to owners"), str(summary.reminders)],
        [_("Bikes moved after 3 or more reminders"), str(summary.moved)],
        [
            _("Escalations"),
            ", ".join(f"{labels.AUTHORITY_LABELS.get(k, k)} {v}" for k, v in summary.escalations.items()) or "0",
        ],
        [
            _("Incidents from the charging ports"),
            ", ".join(f"{labels.INCIDENT_LABELS[k]} {v}" for k, v in summary.incidents.items()) or "0",
        ],
        [
            _("Charges in the sheds"),
            _("%(n)s charges, %(kwh)s kWh", n=summary.shed_charges, kwh=summary.shed_kwh),
        ],
    ]
    story += [_p(_("Key figures"), styles["h2"]), _table(key, [width * 0.45, width * 0.55], styles)]

    by_type = [[_("Hazard type"), _("Reports")]] + [
        [labels.HAZARD_LABELS[t], str(n)] for t, n in summary.by_type.items()
    ]
    by_building = [[_("Building"), _("Reports")]] + [
        [labels.building_name(b), str(n)] for b, n in summary.by_building.items()
    ]
    outcome = [[_("How cases closed"), _("Cases")]] + [
        [labels.OUTCOME_LABELS.get(o, o or "–"), str(n)] for o, n in summary.by_outcome.items()
    ]
    side = Table(
        [
            [
                _table(by_type, [width * 0.36, width * 0.1], styles),
                _table(by_building, [width * 0.2, width * 0.1], styles),
            ]
        ],
        colWidths=[width * 0.5, width * 0.5],
        hAlign="LEFT",
    )
    side.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), _font()),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    story += [_p(_("Reports by type and building"), styles["h2"]), side]
    if len(outcome) > 1:
        story += [Spacer(1, 6), _table(outcome, [width * 0.36, width * 0.1], styles)]

    if summary.trend is not None:
        trend = summary.trend
        week_labels = [f"{w.month}/{w.day}" for w in trend.weeks]
        story.append(
            KeepTogether(
                [
                    _p(_("Weekly trend: hazard reports and shed use"), styles["h2"]),
                    _bar_chart(
                        _("Hazard reports per week (all buildings)"),
                        trend.report_totals,
                        week_labels,
                        RED,
                        width,
                    ),
                    _bar_chart(
                        _("Shed utilisation per week: percent of port time spent charging"),
                        trend.utilisation,
                        week_labels,
                        GREEN,
                        width,
                    ),
                ]
            )
        )

    story.append(_p(_("Cases open at month end"), styles["h2"]))
    if summary.open_at_end:
        rows = [[_("Case"), _("Place"), _("Hazard"), _("Reported"), _("State"), _("Reminders"), _("Deadline")]]
        for case in summary.open_at_end:
            rows.append(
                [
                    f"#{case.id}",
                    labels.case_location(case),
                    labels.HAZARD_LABELS.get(case.hazard_type, ""),
                    to_local(case.created_at).strftime("%m-%d"),
                    labels.STATE_LABELS.get(case.state, case.state),
                    str(case.reminder_count),
                    to_local(case.deadline_at).strftime("%m-%d") if case.deadline_at else "–",
                ]
            )
        story.append(_table(rows, [w * width for w in (0.07, 0.27, 0.24, 0.1, 0.14, 0.08, 0.1)], styles))
    else:
        story.append(_p(_("None."), styles["body"]))
    story += [
        Spacer(1, 10),
        _p(
            _(
                "Rules followed: Order No. 5 of the Ministry of Emergency Management, Art. 37 (no parking or "
                "charging of e-bikes in lobbies, corridors, stairwells or exits); the 2024 guide on e-bike "
                "parking and charging in residential compounds (stop on the spot, notify, move after 3 "
                "reminders, escalate)."
            ),
            styles["sub"],
        ),
    ]

    def footer(canvas, document):
        canvas.saveState()
        canvas.setFont(_font(), 8)
        canvas.setFillColor(colors.HexColor("#555"))
        canvas.drawRightString(A4[0] - 16 * mm, 9 * mm, _glyphs(_("Page %(n)s", n=document.page)))
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
