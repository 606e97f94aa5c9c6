"""Notices with the report QR: a print button, a PDF with one A4 page per building, fonts embedded."""

from __future__ import annotations

import io

from pypdf import PdfReader

from tests.pdffonts import assert_every_font_embedded


def test_notices_page_has_a_print_button_and_a_pdf(client, make_site, make_staff, login):
    site = make_site()
    login(make_staff("site_manager", site))
    page = client.get(f"/safety/notices?site={site.id}").get_data(as_text=True)
    assert "data-print" in page and "onclick" not in page
    response = client.get(f"/safety/notices.pdf?site={site.id}")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(response.data))
    assert len(reader.pages) == len(site.buildings)
    text = reader.pages[0].extract_text()
    assert site.name in text and "report/b/" in text
    assert_every_font_embedded(response.data)


def test_an_unknown_tracking_link_says_so_not_the_port_sticker_text(client):
    response = client.get("/report/t/not-a-real-token")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and 'data-testid="track-missing"' in page
    assert "sticker" not in page and "贴纸" not in page
    assert response.headers["Cache-Control"] == "no-store"


def test_a_refused_report_lists_its_errors_at_the_top(client, make_site):
    make_site()
    page = client.post("/report", data={}).get_data(as_text=True)
    assert 'data-testid="error-summary"' in page
    assert page.index('data-testid="error-summary"') < page.index('name="building"')
