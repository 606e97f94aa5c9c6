"""QR codes for ports: always PUBLIC_BASE_URL + /p/<code>, never the request's host."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


def port_url(public_base_url: str, code: str) -> str:
    """The public address a port's QR code encodes."""
    return f"{public_base_url.rstrip('/')}/p/{code}"


def _qr(data: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=10)
    qr.add_data(data)
    qr.make(fit=True)
    return qr


def qr_svg(data: str) -> bytes:
    """An SVG QR code (a single path, scales to any sticker size)."""
    image = _qr(data).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string()


def qr_png(data: str, box_size: int = 10) -> bytes:
    """A PNG QR code."""
    qr = _qr(data)
    qr.box_size = box_size
    buffer = io.BytesIO()
    qr.make_image(fill_color="black", back_color="white").save(buffer, format="PNG")
    return buffer.getvalue()
