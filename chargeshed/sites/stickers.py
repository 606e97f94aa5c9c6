"""QR sticker sheets: one A4 PDF per shed, twelve stickers a page, ready to print and cut.

Each sticker shows the shed name and port number in large type, the QR code for the port's
public URL, short instructions in Chinese and the URL itself in small text.
"""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen import canvas
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.pdffonts import pdf_fonts
from chargeshed.sites.models import PORT_RETIRED, Port, Shed
from chargeshed.sites.qr import port_url, qr_png

COLUMNS, ROWS = 3, 4
MARGIN = 10 * mm
QR_SIZE = 34 * mm
INSTRUCTIONS = "扫码充电"
HINT = "先插好充电器，再扫码付款"


def sticker_ports(shed: Shed) -> list[Port]:
    """The ports that get a sticker: every port not retired, by number."""
    return list(
        db.session.execute(
            select(Port).where(Port.shed_id == shed.id, Port.status != PORT_RETIRED).order_by(Port.number)
        ).scalars()
    )


def _fit(text: str, font: str, size: float, width: float) -> float:
    """The largest font size up to `size` at which `text` fits `width`."""
    actual = pdfmetrics.stringWidth(text, font, size)
    return size if actual <= width else size * width / actual


def _sticker(
    pdf: canvas.Canvas, x: float, y: float, w: float, h: float, shed: Shed, port: Port, url: str, cjk: str, bold: str
) -> None:
    """Draw one sticker with its lower-left corner at (x, y), in the embedded fonts `cjk` and `bold`."""
    pdf.setStrokeColorRGB(0.7, 0.7, 0.7)
    pdf.setDash(2, 3)
    pdf.rect(x, y, w, h)
    pdf.setDash()
    centre = x + w / 2
    inner = w - 6 * mm
    top = y + h

    name_size = _fit(shed.name, cjk, 14, inner)
    pdf.setFillColorRGB(0, 0, 0)
    pdf.setFont(cjk, name_size)
    pdf.drawCentredString(centre, top - 7 * mm, shed.name)

    number = str(port.number)
    number_size = 30
    suffix_size = 15
    total = pdfmetrics.stringWidth(number, bold, number_size) + pdfmetrics.stringWidth("号", cjk, suffix_size)
    start = centre - total / 2
    baseline = top - 17.5 * mm
    pdf.setFont(bold, number_size)
    pdf.drawString(start, baseline, number)
    pdf.setFont(cjk, suffix_size)
    pdf.drawString(start + pdfmetrics.stringWidth(number, bold, number_size), baseline, "号")

    image = ImageReader(io.BytesIO(qr_png(url, box_size=8)))
    # The code's own white border keeps the text around it out of its quiet zone.
    pdf.drawImage(image, centre - QR_SIZE / 2, baseline - 1 * mm - QR_SIZE, QR_SIZE, QR_SIZE)

    pdf.setFont(cjk, 13)
    pdf.drawCentredString(centre, y + 11 * mm, INSTRUCTIONS)
    pdf.setFont(cjk, _fit(HINT, cjk, 8, inner))
    pdf.drawCentredString(centre, y + 7 * mm, HINT)
    pdf.setFont(cjk, _fit(url, cjk, 6.5, inner))
    pdf.drawCentredString(centre, y + 3 * mm, url)


def sticker_sheet_pdf(shed: Shed, public_base_url: str) -> bytes:
    """The shed's sticker sheet as PDF bytes (A4, 3 × 4 stickers a page)."""
    buffer = io.BytesIO()
    cjk, bold = pdf_fonts(shed.name)  # embedded, so a print shop prints exactly this
    # invariant: the same shed gives byte-identical files (no timestamps or random ids).
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1, invariant=1, initialFontName=cjk)
    pdf.setTitle(f"{shed.name} QR")
    pdf.setAuthor("ChargeShed")
    page_w, page_h = A4
    w = (page_w - 2 * MARGIN) / COLUMNS
    h = (page_h - 2 * MARGIN) / ROWS
    ports = sticker_ports(shed)
    per_page = COLUMNS * ROWS
    for i, port in enumerate(ports):
        if i and i % per_page == 0:
            pdf.showPage()
        slot = i % per_page
        col, row = slot % COLUMNS, slot // COLUMNS
        x = MARGIN + col * w
        y = page_h - MARGIN - (row + 1) * h
        _sticker(pdf, x, y, w, h, shed, port, port_url(public_base_url, port.code), cjk, bold)
    if not ports:
        pdf.setFont(cjk, 14)
        pdf.drawString(MARGIN, page_h - MARGIN - 14, f"{shed.name}: 没有可用的充电口")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
