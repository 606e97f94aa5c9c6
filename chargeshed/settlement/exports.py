"""Statement downloads: CSV (UTF-8 with BOM for spreadsheets), XLSX (sums as formulas) and PDF."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from flask_babel import get_locale
from flask_babel import gettext as _

from chargeshed.cells import neutral_cell, neutral_text
from chargeshed.settlement.document import (
    Bp,
    Document,
    Fen,
    Table,
    Wh,
    build,
    cell_text,
    is_number,
    yuan_text,
)
from chargeshed.settlement.statements import StatementView

FORMATS = ("csv", "xlsx", "pdf")
MIME_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def render(document: Document, fmt: str) -> bytes:
    """The statement as a file in `fmt` (csv, xlsx or pdf)."""
    if fmt == "csv":
        return to_csv(document)
    if fmt == "xlsx":
        return to_xlsx(document)
    if fmt == "pdf":
        return to_pdf(document)
    raise ValueError(f"unknown format {fmt!r}")


def statement_file(view: StatementView, fmt: str) -> tuple[bytes, str]:
    """The statement of a view as (file content, download name), e.g. ST-1-1-0003_2026-10.pdf."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    issued_at = view.statement.issued_at if view.statement is not None and view.statement.is_issued else None
    status = view.status if view.still_current else "draft"
    document = build(view.figures, status, view.number, issued_at)
    figures = view.figures
    stem = view.number or f"{status}-{figures['operator']['id']}-{figures['site']['id']}"
    return render(document, fmt), f"{stem}_{view.period.key}.{fmt}"


# --- CSV -------------------------------------------------------------------------------------------


def to_csv(document: Document) -> bytes:
    """Sections one after another: a title row, a header row, the rows, a total row. Amounts in yuan.

    Every cell goes through neutral_text (no cell can become a spreadsheet formula).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def row(values) -> None:
        writer.writerow([neutral_text(v) for v in values])

    row([document.title])
    for label, value in document.meta:
        row([label, value])
    row([_("Amounts in yuan (CNY), energy in kWh.")])
    for table in document.tables:
        row([])
        row([table.title])
        row(table.header)
        for values in table.rows:
            row([cell_text(v, yuan_text) for v in values])
        if table.total and table.rows:
            row([cell_text(v, yuan_text) for v in table.total_row()])
        if table.note:
            row([table.note])
    row([])
    row([_("How the figures are made")])
    for rule in document.rules:
        row([rule])
    return out.getvalue().encode("utf-8-sig")


# --- XLSX ------------------------------------------------------------------------------------------

YUAN_FORMAT = "#,##0.00"
KWH_FORMAT = "#,##0.000"
SHARE_FORMAT = "0.00%"
# Sheets of their own (long tables people sort and filter); the rest go on the first sheet.
OWN_SHEETS = ("by_shed", "by_day", "adjustments")


def _xlsx_value(value):
    """Exact decimal numbers for the spreadsheet (no binary fractions in our code) and their format."""
    if isinstance(value, Fen):
        return Decimal(value.value).scaleb(-2), YUAN_FORMAT
    if isinstance(value, Wh):
        return Decimal(value.value).scaleb(-3), KWH_FORMAT
    if isinstance(value, Bp):
        return Decimal(value.value).scaleb(-4), SHARE_FORMAT
    return neutral_cell(value), None


def _sheet_title(text: str, taken: set[str]) -> str:
    clean = "".join("_" if c in "[]:*?/\\" else c for c in text)[:28] or "Sheet"
    title, n = clean, 2
    while title in taken:
        title, n = f"{clean[:25]} {n}", n + 1
    taken.add(title)
    return title


def _write_table(sheet, table: Table, first_row: int, bold) -> int:
    """Write a table from `first_row`; returns the next free row. Totals are SUM formulas."""
    from openpyxl.utils import get_column_letter

    row_no = first_row
    sheet.cell(row=row_no, column=1, value=neutral_cell(table.title)).font = bold
    row_no += 1
    for column, label in enumerate(table.header, start=1):
        sheet.cell(row=row_no, column=column, value=neutral_cell(label)).font = bold
    row_no += 1
    data_start = row_no
    for row in table.rows:
        for column, value in enumerate(row, start=1):
            cell_value, number_format = _xlsx_value(value)
            cell = sheet.cell(row=row_no, column=column, value=cell_value)
            if number_format:
                cell.number_format = number_format
        row_no += 1
    if table.total and table.rows:
        for column, value in enumerate(table.total_row(), start=1):
            if column == 1:
                sheet.cell(row=row_no, column=1, value=neutral_cell(value)).font = bold
            elif value != "":
                letter = get_column_letter(column)
                formula = f"=SUM({letter}{data_start}:{letter}{row_no - 1})"
                cell = sheet.cell(row=row_no, column=column, value=formula)
                cell.number_format = _xlsx_value(value)[1] or "0"
                cell.font = bold
        row_no += 1
    if table.note:
        sheet.cell(row=row_no, column=1, value=neutral_cell(table.note))
        row_no += 1
    return row_no + 1


def to_xlsx(document: Document) -> bytes:
    """A workbook: the statement on the first sheet, long breakdowns on their own sheets."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    bold = Font(bold=True)
    book = Workbook()
    main = book.active
    taken: set[str] = set()
    main.title = _sheet_title(_("Statement"), taken)
    main.cell(row=1, column=1, value=neutral_cell(document.title)).font = Font(bold=True, size=14)
    row_no = 2
    for label, value in document.meta:
        main.cell(row=row_no, column=1, value=neutral_cell(label)).font = bold
        main.cell(row=row_no, column=2, value=neutral_cell(value))
        row_no += 1
    row_no += 1
    for table in document.tables:
        if table.key in OWN_SHEETS:
            sheet = book.create_sheet(_sheet_title(table.title, taken))
            _write_table(sheet, table, 1, bold)
            _widen(sheet)
        else:
            row_no = _write_table(main, table, row_no, bold)
    main.cell(row=row_no, column=1, value=_("How the figures are made")).font = bold
    for rule in document.rules:
        row_no += 1
        main.cell(row=row_no, column=1, value=neutral_cell(rule))
    _widen(main)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _widen(sheet) -> None:
    from openpyxl.utils import get_column_letter

    for column in range(1, sheet.max_column + 1):
        width = max(
            (
                len(str(c.value))
                for c in sheet[get_column_letter(column)]
                if c.value is not None and len(str(c.value)) < 60
            ),
            default=8,
        )
        sheet.column_dimensions[get_column_letter(column)].width = min(48, max(10, width * 1.3))


# --- PDF -------------------------------------------------------------------------------------------


def _pdf_font(document: Document) -> str:
    """The embedded Noto Sans CJK subset, covering the parties' and sites' names."""
    from chargeshed.pdffonts import pdf_fonts

    return pdf_fonts(*(str(value) for _label, value in document.meta))[0]


def to_pdf(document: Document) -> bytes:
    """A printable A4 statement: header, summary, parties, agreements, breakdowns, rules."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, TableStyle
    from reportlab.platypus import Table as PdfTable

    font = _pdf_font(document)
    # Chinese wraps between any two characters; other languages between words.
    wrap = "CJK" if str(get_locale() or "").startswith("zh") else None
    base = ParagraphStyle("base", fontName=font, fontSize=8.5, leading=11.5, wordWrap=wrap)
    small = ParagraphStyle("small", parent=base, fontSize=7.5, leading=10, textColor=colors.HexColor("#444444"))
    small_right = ParagraphStyle("small_right", parent=small, alignment=TA_RIGHT)
    title_style = ParagraphStyle("title", parent=base, fontSize=16, leading=20, spaceAfter=4)
    heading = ParagraphStyle("heading", parent=base, fontSize=10.5, leading=14, spaceBefore=8, spaceAfter=3)
    width = A4[0] - 30 * mm

    def para(text, style=base):
        return Paragraph(_escape(text), style)

    story = [para(document.title, title_style)]
    meta = PdfTable(
        [[para(label, small), para(value)] for label, value in document.meta], colWidths=[32 * mm, width - 32 * mm]
    )
    meta.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    story += [meta, Spacer(0, 4 * mm)]
    for table in document.tables:
        numeric = [i for i in range(len(table.header)) if table.rows and is_number(table.rows[0][i])]
        rows = [[para(h, small_right if i in numeric else small) for i, h in enumerate(table.header)]]
        rows += [[_pdf_cell(v, base) for v in row] for row in table.rows]
        if table.total and table.rows:
            rows.append([_pdf_cell(v, base) for v in table.total_row()])
        pdf_table = PdfTable(rows, colWidths=_column_widths(table, width), repeatRows=1)
        style = [
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
        style += [("ALIGN", (i, 0), (i, -1), "RIGHT") for i in numeric]
        if table.total and table.rows:
            style += [
                ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
                ("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#f0f0f0")),
            ]
        pdf_table.setStyle(TableStyle(style))
        block = [para(table.title, heading), pdf_table]
        if table.note:
            block.append(para(table.note, small))
        # Short tables stay on one page with their title; long ones flow, repeating their header.
        story += [KeepTogether(block)] if len(rows) < 25 else block
    story.append(para(_("How the figures are made"), heading))
    story += [para(f"{n}. {rule}", small) for n, rule in enumerate(document.rules, start=1)]

    footer_left = f"{document.title} – {document.number or document.meta[1][1]}"

    def decorate(canvas, doc):
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.drawString(15 * mm, 10 * mm, footer_left)
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, _("Page %(n)d", n=doc.page))
        if not document.is_final:
            canvas.setFont(font, 60)
            canvas.setFillColor(colors.Color(0.8, 0.1, 0.1, alpha=0.12))
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(45)
            canvas.drawCentredString(0, 0, _("DRAFT"))
        canvas.restoreState()

    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=document.title,
        author=document.meta[2][1],
        initialFontName=font,
    )
    pdf.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return out.getvalue()


def _escape(text) -> str:
    """PDF paragraph markup for text: neutralised (copied into a spreadsheet it stays text), escaped."""
    return neutral_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pdf_cell(value, style):
    from reportlab.platypus import Paragraph

    if is_number(value):
        return cell_text(value)
    return Paragraph(_escape(cell_text(value)), style)


def _column_widths(table: Table, width: float) -> list[float]:
    """Text columns share what the numeric columns leave."""
    count = len(table.header)
    if not table.rows:
        return [width / count] * count
    numeric = [is_number(v) for v in table.rows[0]]
    number_width = min(28 * 2.8346, width / count)
    text_columns = count - sum(numeric)
    text_width = (width - number_width * sum(numeric)) / max(1, text_columns)
    return [number_width if is_number else text_width for is_number in numeric]
