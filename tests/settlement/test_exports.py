"""Downloads opened back: the CSV parsed, the XLSX read with openpyxl, the PDF's text extracted."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.settlement import statements
from chargeshed.settlement.exports import statement_file
from chargeshed.settlement.periods import Period
from tests.pdffonts import assert_every_font_embedded
from tests.settlement.conftest import THREE_PARTIES, local

OCTOBER = Period.month("2026-10")


@pytest.fixture
def october(app, make_site, make_resident, ports, charge, agree, at, top_up, refund):
    """An October with two sheds, electricity pass-through, a fee and a refund; returns the site."""
    at(2026, 9, 1)
    site = make_site(sheds=(2, 2))
    agree(site, price=62)
    user = make_resident()
    at(2026, 10, 1, 8)
    top_up(user, 5000, fee_fen=33)
    port = ports(site)
    for day, shed, minutes, watts in [
        (2, 1, 100, 180),
        (2, 2, 300, 350),
        (9, 1, 500, 250),
        (17, 2, 45, 150),
        (30, 1, 700, 390),
    ]:
        session = charge(user, port[shed][0], local(2026, 10, day, 19), minutes=minutes, watts=watts)
    at(2026, 10, 31, 9)
    refund(session, 40, "stopped late")
    at(2026, 11, 3)
    return site


def _view(site):
    return statements.view_statement(site.sheds[0].operator_id, site.id, OCTOBER)


def _fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def _csv_sections(content: bytes) -> dict[str, list[list[str]]]:
    """Title -> rows (header first) of each section of the CSV."""
    sections, current = {}, None
    for row in csv.reader(io.StringIO(content.decode("utf-8-sig"))):
        if not row:
            current = None
        elif current is None and len(row) == 1:
            current = sections.setdefault(row[0], [])
        elif current is not None:
            current.append(row)
    return sections


def test_the_csv_parses_back_to_the_same_figures(october):
    view = _view(october)
    content, name = statement_file(view, "csv")
    assert name == "draft-1-1_2026-10.csv" and content.startswith(b"\xef\xbb\xbf")  # BOM for spreadsheets
    figures, totals = view.figures, view.figures["totals"]
    sections = _csv_sections(content)
    summary = dict(sections["Summary"][1:])
    assert int(summary["Sessions"]) == totals["sessions"] == 5
    assert Decimal(summary["Energy (kWh)"]) * 1000 == totals["energy_wh"]
    for label, key in [
        ("Gross revenue", "gross_fen"),
        ("Refunds and corrections", "adjustments_fen"),
        ("Net revenue", "net_fen"),
        ("Electricity pass-through", "electricity_fen"),
        ("Payment fees (allocated)", "fees_fen"),
        ("Due to the parties", "payout_fen"),
    ]:
        assert _fen(summary[label]) == totals[key], label
    assert totals["adjustments_fen"] == -40 and totals["fees_fen"] == 33
    header, *rows, total = sections["By shed"]
    assert header[:3] == ["Shed", "Sessions", "Energy (kWh)"]  # names, never ledger ids
    assert [(r[0], int(r[1]), _fen(r[3])) for r in rows] == [
        (s["name"], s["sessions"], s["gross_fen"]) for s in figures["sheds"]
    ]
    assert total[0] == "Total" and _fen(total[3]) == totals["gross_fen"]
    assert b"revenue:shed:" not in content
    days = sections["By day"][1:-1]
    assert len(days) == 31 and sum(_fen(r[3]) for r in days) == totals["gross_fen"]
    parties = {r[0]: _fen(r[2]) for r in sections["Due to each party"][1:-1]}
    assert parties == {p["name"]: p["payout_fen"] for p in figures["parties"]}
    assert set(parties) == {p.name for p in THREE_PARTIES}
    (refund,) = sections["Refunds and corrections"][1:-1]
    assert refund[2] == "Session refund" and _fen(refund[4]) == -40


def test_the_xlsx_holds_exact_numbers_and_sums_as_formulas(october):
    view = _view(october)
    content, name = statement_file(view, "xlsx")
    assert name.endswith(".xlsx")
    book = load_workbook(io.BytesIO(content))
    assert book.sheetnames == ["Statement", "By shed", "By day", "Refunds and corrections"]
    totals = view.figures["totals"]

    days = book["By day"]
    assert [c.value for c in days[2]] == [
        "Day",
        "Sessions",
        "Energy (kWh)",
        "Gross revenue",
        "Monthly pass revenue",
        "Refunds and corrections",
        "Net revenue",
    ]
    data = list(days.iter_rows(min_row=3, max_row=33, values_only=True))
    assert [row[0] for row in data] == [d["date"] for d in view.figures["days"]]
    assert [_fen(str(row[3])) for row in data] == [d["gross_fen"] for d in view.figures["days"]]
    total_row = [c.value for c in days[34]]
    assert total_row[0] == "Total" and total_row[1] == "=SUM(B3:B33)" and total_row[3] == "=SUM(D3:D33)"
    assert sum(_fen(str(row[3])) for row in data) == totals["gross_fen"]
    assert days["D3"].number_format == "#,##0.00"

    main = book["Statement"]
    cells = {row[0]: row[1] for row in main.iter_rows(values_only=True) if row and row[0]}
    assert cells["Statement No."] == "– (not issued)"
    assert _fen(str(cells["Net revenue"])) == totals["net_fen"]
    assert _fen(str(cells["Due to the parties"])) == totals["payout_fen"]
    split_rows = [
        row
        for row in main.iter_rows(values_only=True)
        if row[0] in {p.name for p in THREE_PARTIES} and row[3] is not None
    ]  # the agreement's table: party, role, share, ...
    assert [Decimal(str(row[2])) for row in split_rows] == [Decimal("0.6"), Decimal("0.3"), Decimal("0.1")]


def test_the_pdf_prints_the_parties_terms_and_totals(october):
    view = _view(october)
    draft, _name = statement_file(view, "pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(draft)).pages)
    assert "Settlement statement (draft)" in text and "DRAFT" in text
    statements.issue(statements.review(october.sheds[0].operator_id, october.id, OCTOBER, None), None)
    db.session.commit()
    issued, name = statement_file(_view(october), "pdf")
    assert name == "ST-1-1-0001_2026-10.pdf"
    reader = PdfReader(io.BytesIO(issued))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "ST-1-1-0001" in text and "DRAFT" not in text
    totals = view.figures["totals"]
    for party in view.figures["parties"]:
        assert party["name"] in text and format_fen(party["payout_fen"]) in text.replace("¥ ", "¥")
    for key in ("gross_fen", "net_fen", "electricity_fen", "payout_fen"):
        assert format_fen(totals[key]) in text.replace("¥ ", "¥"), key
    assert "¥0.62/kWh" in text.replace("¥ ", "¥")
    assert "largest-remainder" in text.replace("\n", " ")
    assert_every_font_embedded(draft) and assert_every_font_embedded(issued)


def test_an_issued_download_stays_the_same_after_later_bookings(october, at, charge, ports, make_resident):
    statements.issue(statements.review(october.sheds[0].operator_id, october.id, OCTOBER, None), None)
    db.session.commit()
    before, _ = statement_file(_view(october), "csv")
    at(2026, 11, 4)
    charge(make_resident(balance_fen=1000), ports(october)[2][1], local(2026, 11, 4, 9), minutes=100)
    after, _ = statement_file(_view(october), "csv")
    assert after == before


def test_the_chinese_statement_files_have_no_english_left(october):
    """Exports are read by the owners' committee: every heading and label comes from the catalogue."""
    import re

    from flask_babel import force_locale

    with force_locale("zh_CN"):
        content, _name = statement_file(_view(october), "csv")
    words = set(re.findall(r"[A-Za-z]{3,}", content.decode("utf-8-sig"))) - {"kWh"}
    assert words == set()
