"""Printable hazard-report notices: one A4 page per building with its report QR code, as PDF."""

from __future__ import annotations

import io
from dataclasses import dataclass

from flask_babel import gettext as _
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen import canvas

from chargeshed.pdffonts import pdf_fonts
from chargeshed.sites.qr import qr_png

RED = (0.70, 0.15, 0.12)
MARGIN = 18 * mm


@dataclass(frozen=True)
class Notice:
    """One building's notice: where it hangs and the report address its QR code opens."""

    place: str
    url: str


def _lines(text: str, font: str, size: float, width: float) -> list[str]:
    """Wrap `text` to `width`: Chinese between characters, other text between words."""
    words = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    lines, line = [], ""
    for word in words:
        candidate = f"{line}{joiner}{word}" if line else word
        if line and pdfmetrics.stringWidth(candidate, font, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


def notices_pdf(site_name: str, notices: list[Notice]) -> bytes:
    """The notices of a site as an A4 PDF (fonts embedded), one page per building."""
    title = _("Fire hazard? Report it here")
    body = _(
        "Flying wires, e-bikes or batteries charging in corridors, stairwells or lobbies, blocked exits. "
        "Scan, take a photo, send. You may stay anonymous."
    )
    footer = _("Charge your e-bike in the charging shed, not in the building.")
    regular, bold = pdf_fonts(site_name, *(n.place for n in notices))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1, invariant=1, initialFontName=regular)
    pdf.setTitle(_("Notices with QR") + f" · {site_name}")
    width, height = A4
    inner = width - 2 * MARGIN
    for notice in notices:
        pdf.setStrokeColorRGB(*RED)
        pdf.setLineWidth(6)
        pdf.rect(MARGIN / 2, MARGIN / 2, width - MARGIN, height - MARGIN)
        y = height - MARGIN - 14 * mm
        pdf.setFillColorRGB(0, 0, 0)
        pdf.setFont(bold, 22)
        pdf.drawCentredString(width / 2, y, notice.place)
        pdf.setFillColorRGB(*RED)
        size = 40
        for line in _lines(title, bold, size, inner):  # a title too long for one line breaks at its punctuation
            y -= size * 1.3
            pdf.setFont(bold, size)
            pdf.drawCentredString(width / 2, y, line)
        pdf.setFillColorRGB(0, 0, 0)
        y -= 8 * mm
        for line in _lines(body, regular, 17, inner):
            y -= 17 * 1.45
            pdf.setFont(regular, 17)
            pdf.drawCentredString(width / 2, y, line)
        qr_size = 95 * mm
        y -= qr_size + 8 * mm
        pdf.drawImage(
            ImageReader(io.BytesIO(qr_png(notice.url, box_size=12))), (width - qr_size) / 2, y, qr_size, qr_size
        )
        pdf.setFont(regular, 10)
        pdf.drawCentredString(width / 2, y - 5 * mm, notice.url)
        pdf.setFont(bold, 18)
        pdf.drawCentredString(width / 2, MARGIN + 10 * mm, footer)
        pdf.showPage()
    if not notices:
        pdf.setFont(regular, 14)
        pdf.drawString(MARGIN, height - MARGIN - 14, site_name)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()
