"""QR sticker sheets: every code decodes, with an independent decoder, to exactly its port's URL."""

from __future__ import annotations

import io
import shutil
import subprocess

import zxingcpp  # a test dependency: missing is an error, never a skip
from pypdf import PdfReader
from sqlalchemy import select

from chargeshed.accounts.models import ROLE_SITE_MANAGER
from chargeshed.extensions import db
from chargeshed.sites.models import Port
from tests.conftest import skip_or_fail
from tests.pdffonts import assert_every_font_embedded

PDFTOPPM = shutil.which("pdftoppm") or "/usr/bin/pdftoppm"


def decoded_urls(pdf_bytes: bytes, tmp_path) -> list[str]:
    """Render every page with poppler and read every QR code on it with zxing-cpp."""
    from PIL import Image

    if not shutil.which(PDFTOPPM):
        skip_or_fail("pdftoppm is not installed")
    pdf = tmp_path / "sheet.pdf"
    pdf.write_bytes(pdf_bytes)
    subprocess.run([PDFTOPPM, "-r", "150", "-png", str(pdf), str(tmp_path / "page")], check=True)
    urls = []
    for page in sorted(tmp_path.glob("page*.png")):
        urls += [
            result.text
            for result in zxingcpp.read_barcodes(Image.open(page))
            if result.format == zxingcpp.BarcodeFormat.QRCode
        ]
    return urls


def test_sticker_sheet_codes_decode_to_exactly_the_port_urls(client, make_site, make_staff, login, tmp_path):
    site = make_site(sheds=(14,))
    retired = db.session.execute(select(Port).where(Port.number == 14)).scalar_one()
    retired.status = "retired"
    db.session.commit()
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    response = client.get("/manage/sheds/1/stickers.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"

    reader = PdfReader(io.BytesIO(response.data))
    assert len(reader.pages) == 2  # 13 stickers, 12 a page
    text = "".join(page.extract_text() for page in reader.pages)
    assert "1号车棚" in text and "扫码充电" in text and "https://charge.example.cn/p/T11001" in text

    expected = sorted(f"https://charge.example.cn/p/T11{n:03d}" for n in range(1, 14))
    assert sorted(decoded_urls(response.data, tmp_path)) == expected
    # A print shop prints exactly this: every font is in the file (no reader-supplied substitutes).
    assert {font["sub"] for font in assert_every_font_embedded(response.data)} == {"yes"}


def test_cli_writes_the_same_sheet(app, runner, make_site, tmp_path, client, make_staff, login):
    site = make_site(sheds=(3,))
    out = tmp_path / "cli.pdf"
    result = runner.invoke(args=["qr-sheet", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 stickers" in result.output
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    assert out.read_bytes() == client.get("/manage/sheds/1/stickers.pdf").data
    missing = runner.invoke(args=["qr-sheet", "99", "-o", str(tmp_path / "x.pdf")])
    assert missing.exit_code != 0 and "no shed with id 99" in missing.output
