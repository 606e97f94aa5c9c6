"""Operator pages through the test client: tenants, roles, the agreement form, review and issue, downloads."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from chargeshed.accounts.models import StaffAction
from chargeshed.extensions import db
from chargeshed.settlement import statements
from chargeshed.settlement.models import Agreement, Statement
from chargeshed.settlement.periods import Period
from tests.settlement.conftest import local


@pytest.fixture
def english_client(client):
    client.set_cookie("lang", "en")
    return client


@pytest.fixture
def october(app, make_site, make_resident, ports, charge, agree, at):
    """Two compounds of two operators; October charged at the first; today is 3 November."""
    at(2026, 9, 1)
    site, other = make_site(sheds=(2, 2)), make_site()
    agree(site, price=60)
    user = make_resident(balance_fen=5000)
    charge(user, ports(site)[1][0], local(2026, 10, 8, 20), minutes=200, watts=300)
    charge(user, ports(site)[2][0], local(2026, 10, 9, 20), minutes=100, watts=150)
    at(2026, 11, 3)
    return site, other


def test_each_role_sees_only_its_own_operator_and_site(app, english_client, login, make_staff, october, make_resident):
    site, other = october
    client = english_client
    urls = [
        f"/operator/1/{site.id}/agreements",
        f"/operator/1/{site.id}/statements/2026-10",
        f"/operator/1/{site.id}/statements/2026-10/statement.csv",
    ]
    login(make_staff("operator_staff", operator_id=2))  # the other compound's operator
    assert [client.get(u).status_code for u in urls] == [404, 404, 404]
    home = client.get("/operator/").get_data(as_text=True)
    assert other.name in home and f'data-site="{site.id}"' not in home
    client.post("/logout")
    login(make_staff("site_manager", site_id=site.id))
    assert [client.get(u).status_code for u in urls] == [200, 200, 200]
    assert client.get(f"/operator/2/{other.id}/statements/2026-10").status_code == 404
    client.post("/logout")
    login(make_staff("patrol", site_id=site.id))
    assert client.get("/operator/").status_code == 403
    client.post("/logout")
    login(make_resident())
    assert client.get(urls[0]).status_code == 403


def test_an_agreement_is_made_from_the_form_and_bad_shares_are_refused(
    app, english_client, login, make_staff, make_site
):
    site = make_site(sheds=(2, 2))
    client = english_client
    login(make_staff("operator_staff", operator_id=1))
    form = client.get(f"/operator/1/{site.id}/agreements/new").get_data(as_text=True)
    assert "Every shed of this operator at the site" in form and "2号车棚" in form
    data = {
        "scope": "0",
        "valid_from": "2026-10-01",
        "valid_to": "",
        "electricity_price": "0.62",
        "fee_mode": "shared",
        "note": "三方协议",
        "parties-0-name": "运营方",
        "parties-0-role": "operator",
        "parties-0-share": "55.5",
        "parties-0-pays_electricity": "y",
        "parties-1-name": "物业",
        "parties-1-role": "property",
        "parties-1-share": "40",
        "parties-2-name": "",
        "parties-2-share": "",
        "parties-3-name": "",
        "parties-3-share": "",
    }
    refused = client.post(f"/operator/1/{site.id}/agreements/new", data=data)
    assert refused.status_code == 422
    assert "The shares add up to 95.50 %; they must add up to exactly 100.00 %" in refused.get_data(as_text=True)
    assert db.session.query(Agreement).count() == 0
    bad_number = client.post(f"/operator/1/{site.id}/agreements/new", data=data | {"parties-1-share": "4o"})
    assert bad_number.status_code == 422 and "percentage from 0 to 100" in bad_number.get_data(as_text=True)

    saved = client.post(f"/operator/1/{site.id}/agreements/new", data=data | {"parties-1-share": "44.5"})
    assert saved.status_code == 302
    db.session.rollback()  # what the page committed, not what its session still holds
    agreement = db.session.query(Agreement).one()
    assert [(p.name, p.share_bp, p.pays_electricity) for p in agreement.parties] == [
        ("运营方", 5550, True),
        ("物业", 4450, False),
    ]
    assert agreement.electricity_fen_per_kwh == 62 and agreement.note == "三方协议"
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "55.50 %" in page and "¥0.62/kWh" in page

    overlap = client.post(f"/operator/1/{site.id}/agreements/new", data=data | {"parties-1-share": "44.5"})
    assert overlap.status_code == 422
    assert f"overlaps agreement #{agreement.id}" in overlap.get_data(as_text=True)


def test_site_managers_read_agreements_but_only_the_operator_writes_them(
    app, english_client, login, make_staff, october
):
    site, _other = october
    login(make_staff("site_manager", site_id=site.id))
    assert english_client.get(f"/operator/1/{site.id}/agreements/new").status_code == 403
    page = english_client.get(f"/operator/1/{site.id}/agreements").get_data(as_text=True)
    assert "Revenue-split agreements" in page and "New agreement" not in page


def test_review_then_issue_through_htmx_and_a_double_click_changes_nothing(
    app, english_client, login, make_staff, october
):
    site, _other = october
    client = english_client
    base = f"/operator/1/{site.id}/statements/2026-10"
    assert client.get(base).headers["Location"].startswith("/login")  # not signed in yet
    login(make_staff("site_manager", site_id=site.id))
    page = client.get(base).get_data(as_text=True)
    assert 'data-testid="gross" data-fen="250"' in page and 'data-status="draft"' in page
    # The property company's manager reviews; only the operator issues.
    assert client.post(base + "/issue", headers={"HX-Request": "true"}).status_code == 403
    reviewed = client.post(base + "/review", headers={"HX-Request": "true"})
    assert reviewed.status_code == 200 and 'data-status="reviewed"' in reviewed.get_data(as_text=True)
    assert "<html" not in reviewed.get_data(as_text=True)  # the statement alone, not the page
    assert "<dd>Reviewed, not issued</dd>" in reviewed.get_data(as_text=True)
    client.post("/logout")

    login(make_staff("operator_staff", operator_id=1))
    first = client.post(base + "/issue", headers={"HX-Request": "true"}).get_data(as_text=True)
    second = client.post(base + "/issue", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-status="issued"' in first and "Statement ST-1-1-0001 issued" in first
    # The swap carries the whole statement: its number and status below the banner agree with it.
    assert "<dd>ST-1-1-0001</dd>" in first and "not issued" not in first and "<dd>Draft</dd>" not in first
    assert "ST-1-1-0001 was already issued on 2026-11-03 12:00; nothing changed." in second
    db.session.rollback()  # what the page committed, not what its session still holds
    assert db.session.query(Statement).one().number == "ST-1-1-0001"
    page = client.get(base).get_data(as_text=True)
    assert 'data-testid="statement-number">ST-1-1-0001<' in page and 'data-testid="review"' not in page


def test_review_and_reopen_are_stored_by_the_page(app, english_client, login, make_staff, october):
    site, _other = october
    base = f"/operator/1/{site.id}/statements/2026-10"
    manager = login(make_staff("site_manager", site_id=site.id))
    assert english_client.post(base + "/review").status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    reviewed = db.session.query(Statement).one()
    assert (reviewed.status, reviewed.reviewed_by_id) == ("reviewed", manager.id)
    assert reviewed.figures["totals"]["gross_fen"] == 250
    assert [a.action for a in db.session.query(StaffAction)] == ["statement_reviewed"]
    reopened = english_client.post(base + "/reopen", headers={"HX-Request": "true"})
    assert reopened.status_code == 200 and "Back to draft." in reopened.get_data(as_text=True)
    db.session.rollback()  # what the page committed, not what its session still holds
    draft = db.session.query(Statement).one()
    assert (draft.status, draft.figures, draft.reviewed_by_id) == ("draft", None, None)
    assert "The statement is a draft already." in english_client.post(base + "/reopen", follow_redirects=True).get_data(
        as_text=True
    )


def test_plain_form_posts_redirect_with_the_message(app, english_client, login, make_staff, october):
    site, _other = october
    base = f"/operator/1/{site.id}/statements/2026-10"
    login(make_staff("admin"))
    issued = english_client.post(base + "/issue")
    assert issued.status_code == 303 and issued.headers["Location"].endswith(base)
    assert "Review the statement before issuing it." in english_client.get(base).get_data(as_text=True)


def test_open_periods_and_nonsense_periods(app, english_client, login, make_staff, october):
    site, _other = october
    login(make_staff("admin"))
    open_month = english_client.get(f"/operator/1/{site.id}/statements/2026-11")
    assert open_month.status_code == 409
    assert "The period 2026-11 is not finished yet" in open_month.get_data(as_text=True)
    assert (
        english_client.post(
            f"/operator/1/{site.id}/statements/2026-11/review", headers={"HX-Request": "true"}
        ).status_code
        == 409
    )
    assert db.session.query(Statement).count() == 0
    assert english_client.get(f"/operator/1/{site.id}/statements/2026-99").status_code == 404
    assert english_client.get(f"/operator/1/{site.id}/statements/2026-10/statement.doc").status_code == 404
    custom = english_client.get(f"/operator/1/{site.id}/statements?start=2026-10-08&end=2026-10-08")
    assert custom.status_code == 302
    assert custom.headers["Location"].endswith("/statements/2026-10-08_2026-10-08")
    one_day = english_client.get(custom.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="gross" data-fen="200"' in one_day
    backwards = english_client.get(f"/operator/1/{site.id}/statements?start=2026-10-08&end=2026-10-01")
    assert backwards.status_code == 422 and "ends before it starts" in backwards.get_data(as_text=True)


def test_downloads_carry_the_page_figures(app, english_client, login, make_staff, october):
    site, _other = october
    login(make_staff("admin"))
    base = f"/operator/1/{site.id}/statements/2026-10/statement"
    csv_file = english_client.get(base + ".csv")
    assert csv_file.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="draft-1-1_2026-10.csv"' in csv_file.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(csv_file.get_data().decode("utf-8-sig"))))
    assert ["Gross revenue", "2.50"] in rows
    assert english_client.get(base + ".pdf").get_data()[:5] == b"%PDF-"
    xlsx = english_client.get(base + ".xlsx")
    assert xlsx.headers["Content-Type"].startswith("application/vnd.openxmlformats")


def test_nonsense_in_the_agreement_form_is_a_message_not_an_error(app, english_client, login, make_staff, make_site):
    site = make_site()
    login(make_staff("admin"))
    url = f"/operator/1/{site.id}/agreements/new"
    for bad in (
        {"electricity_price": "1e400"},
        {"parties-0-share": "NaN"},
        {"parties-0-share": "-5"},
        {"scope": "99"},
        {"valid_from": "0001-01-01"},
        {"parties-0-role": "landlord"},
        {"parties-0-name": "x" * 500},
    ):
        data = {
            "scope": "0",
            "valid_from": "2026-10-01",
            "electricity_price": "0",
            "fee_mode": "shared",
            "parties-0-name": "运营方",
            "parties-0-role": "operator",
            "parties-0-share": "100",
        } | bad
        response = english_client.post(url, data=data)
        assert response.status_code == 422, bad
        assert 'class="error"' in response.get_data(as_text=True) or "flash-error" in response.get_data(as_text=True), (
            bad
        )
    assert db.session.query(Agreement).count() == 0


def test_only_agreements_no_issued_statement_used_can_be_deleted(
    app, english_client, login, make_staff, october, agree
):
    site, _other = october
    used = db.session.query(Agreement).one()
    later = agree(site, date(2026, 12, 1), parties=None)
    statements.issue(statements.review(1, site.id, Period.month("2026-10"), None), None)
    db.session.commit()
    login(make_staff("operator_staff", operator_id=1))
    page = english_client.get(f"/operator/1/{site.id}/agreements").get_data(as_text=True)
    assert f"Delete agreement #{later.id}" in page and f"Delete agreement #{used.id}" not in page
    kept = english_client.post(f"/operator/agreements/{used.id}/delete", follow_redirects=True)
    assert "already issued; it is kept" in kept.get_data(as_text=True)
    gone = english_client.post(f"/operator/agreements/{later.id}/delete")
    db.session.rollback()  # what the page committed, not what its session still holds
    assert [a.id for a in db.session.query(Agreement)] == [used.id]
    assert "Agreement deleted." in english_client.get(gone.headers["Location"]).get_data(as_text=True)
    login(make_staff("operator_staff", operator_id=2))
    assert english_client.post(f"/operator/agreements/{used.id}/delete").status_code == 404
