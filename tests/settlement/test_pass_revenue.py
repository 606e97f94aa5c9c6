"""包月 on settlement statements: a pass's revenue recognised per day of validity lands in the month of
each day, shared between the site's sheds and split like session revenue; a refund takes back only what
is not yet recognised, so the months and the refund add up to the price exactly."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import func, select

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.passes import service as passes
from chargeshed.passes.models import PassPlan
from chargeshed.settlement import statements
from chargeshed.settlement.exports import statement_file
from chargeshed.settlement.figures import compute_figures
from chargeshed.settlement.pass_revenue import pass_revenue_by_shed_day
from chargeshed.settlement.periods import Period
from chargeshed.sites.models import PORT_RETIRED
from tests.settlement.conftest import local

SEPTEMBER, OCTOBER = Period.month("2026-09"), Period.month("2026-10")
PRICE = 1000  # ¥10.00 for 30 days: not a whole number of fen a day, so the rounding shows


def _fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def _csv_sections(content: bytes) -> dict[str, list[list[str]]]:
    sections, current = {}, None
    for row in csv.reader(io.StringIO(content.decode("utf-8-sig"))):
        if not row:
            current = None
        elif current is None and len(row) == 1:
            current = sections.setdefault(row[0], [])
        elif current is not None:
            current.append(row)
    return sections


@pytest.fixture
def pass_site(app, make_site, make_resident, agree, at):
    """A site with two sheds of two ports, a 60/30/10 agreement, and a ¥10 / 30-day pass bought at noon on
    20 September; returns (site, resident, pass)."""
    at(2026, 9, 1)
    site = make_site(sheds=(2, 2))
    agree(site)
    user = make_resident(balance_fen=5000)
    plan = PassPlan(
        site_id=site.id, name="月卡", price_fen=PRICE, days=30, charges_per_day=2, hours_per_charge=8, max_watts=400
    )
    db.session.add(plan)
    db.session.commit()
    bought = passes.buy(user.id, plan, at(2026, 9, 20, 12))
    db.session.commit()
    return site, user, bought


def _view(site, period):
    return statements.view_statement(site.sheds[0].operator_id, site.id, period)


def test_a_pass_across_a_month_boundary_lands_in_both_statements_exactly(pass_site, at):
    site, user, bought = pass_site
    assert (bought.starts_on.isoformat(), bought.last_day.isoformat()) == ("2026-09-20", "2026-10-19")
    at(2026, 10, 2)
    september = _view(site, SEPTEMBER).figures
    # 20–30 September: 11 of 30 days, floor(1000 x 11 / 30) = 366 fen.
    assert september["totals"]["pass_fen"] == PRICE * 11 // 30 == 366
    assert september["totals"]["gross_fen"] == 0 and september["totals"]["net_fen"] == 366
    days = {d["date"]: d["pass_fen"] for d in september["days"]}
    assert days["2026-09-19"] == 0 and days["2026-09-20"] == 33 and sum(days.values()) == 366
    # Two sheds of two ports each share each day's revenue half and half, the odd fen in turn.
    assert [(s["name"], s["pass_fen"]) for s in september["sheds"]] == [("1号车棚", 183), ("2号车棚", 183)]
    # Split like session revenue: 60 / 30 / 10 of the net, exact to the fen.
    assert [p["payout_fen"] for p in september["parties"]] == [220, 110, 36]
    assert sum(p["payout_fen"] for p in september["parties"]) == 366
    # The other 19 days were paid for but not earned yet: residents' money, not revenue.
    assert september["residents"]["passes_unearned_fen"] == PRICE - 366 == 634
    statements.issue(statements.review(site.sheds[0].operator_id, site.id, SEPTEMBER, None), None)
    db.session.commit()

    at(2026, 11, 2)
    october = _view(site, OCTOBER).figures
    # 1–19 October: the other 19 days, 1000 - 366 = 634 fen.
    assert october["totals"]["pass_fen"] == 634
    assert september["totals"]["pass_fen"] + october["totals"]["pass_fen"] == PRICE
    october_days = {d["date"]: d["pass_fen"] for d in october["days"]}
    assert october_days["2026-10-19"] == 34 and october_days["2026-10-20"] == 0
    assert check_ledger() == []


def test_a_refund_in_october_takes_back_only_what_is_not_yet_recognised(pass_site, at):
    site, user, bought = pass_site
    at(2026, 10, 2)
    statements.issue(statements.review(site.sheds[0].operator_id, site.id, SEPTEMBER, None), None)
    db.session.commit()
    wallet_before = wallet_balance(user.id)

    # 10 October: 21 of the 30 days are begun (20 September – 10 October), so 9 days come back.
    refunded = passes.refund(bought, at(2026, 10, 10, 15))
    db.session.commit()
    assert refunded == PRICE - PRICE * 21 // 30 == 300
    assert wallet_balance(user.id) == wallet_before + 300

    at(2026, 11, 2)
    september = _view(site, SEPTEMBER)
    assert september.status == "issued" and september.figures["totals"]["pass_fen"] == 366
    # Recomputing September from the books gives the same: the refund changed nothing already recognised.
    live = compute_figures(site.sheds[0].operator_id, site.id, SEPTEMBER)
    assert live["totals"]["pass_fen"] == 366 and live["residents"]["passes_unearned_fen"] == 634
    october = _view(site, OCTOBER).figures
    assert october["totals"]["pass_fen"] == 700 - 366 == 334
    days = {d["date"]: d["pass_fen"] for d in october["days"]}
    assert days["2026-10-10"] > 0 and days["2026-10-11"] == 0  # nothing earned after the refund day
    assert 366 + 334 + refunded == PRICE  # what the resident paid, to the fen
    assert _view(site, OCTOBER).figures["residents"]["passes_unearned_fen"] == 0
    assert check_ledger() == []


def test_the_october_files_carry_the_pass_line(pass_site, at, charge, ports):
    site, user, bought = pass_site
    passes.refund(bought, at(2026, 10, 10, 15))
    db.session.commit()
    session = charge(user, ports(site)[1][0], local(2026, 10, 12, 20), minutes=120, watts=180)
    at(2026, 11, 2)
    view = _view(site, OCTOBER)
    totals = view.figures["totals"]
    assert (totals["gross_fen"], totals["pass_fen"]) == (session.cost_fen, 334)
    assert totals["net_fen"] == session.cost_fen + 334

    content, _name = statement_file(view, "csv")
    sections = _csv_sections(content)
    summary = dict(sections["Summary"][1:])
    assert _fen(summary["Monthly pass revenue"]) == 334
    assert _fen(summary["Gross revenue"]) == session.cost_fen
    assert _fen(summary["Net revenue"]) == totals["net_fen"]
    residents = dict(r for r in sections["Residents' money (not revenue)"][1:] if len(r) == 2)
    assert _fen(residents["Monthly passes paid for days after the period (unused days are refundable)"]) == 0
    header, *rows, total = sections["By day"]
    column = header.index("Monthly pass revenue")
    assert sum(_fen(r[column]) for r in rows) == _fen(total[column]) == 334
    header, *rows, total = sections["By shed"]
    assert [_fen(r[header.index("Monthly pass revenue")]) for r in rows] == [167, 167]

    book = load_workbook(io.BytesIO(statement_file(view, "xlsx")[0]))
    main = {row[0]: row[1] for row in book["Statement"].iter_rows(values_only=True) if row and row[0]}
    assert _fen(str(main["Monthly pass revenue"])) == 334
    by_day = book["By day"]
    header = [c.value for c in by_day[2]]
    letter = "ABCDEFG"[header.index("Monthly pass revenue")]
    assert by_day[f"{letter}34"].value == f"=SUM({letter}3:{letter}33)"
    assert sum(_fen(str(by_day[f"{letter}{r}"].value)) for r in range(3, 34)) == 334

    pdf, _name = statement_file(view, "pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).replace("¥ ", "¥")
    assert "Monthly pass revenue" in text and format_fen(334) in text
    assert "recognised per day of validity" in text.replace("\n", " ")


def test_each_days_pass_revenue_follows_the_ports_in_service(pass_site, at, ports):
    site, _user, _bought = pass_site
    for port in ports(site)[2]:
        port.status = PORT_RETIRED  # the second shed is closed: the pass is only usable in the first
    db.session.commit()
    by_shed = pass_revenue_by_shed_day(SEPTEMBER)
    sheds = [shed.id for shed in site.sheds]
    assert sum(v for (shed, _d), v in by_shed.items() if shed == sheds[0]) == 366
    assert not any(shed == sheds[1] for shed, _d in by_shed)


def test_the_operator_page_shows_the_pass_line(pass_site, at, client, login, make_staff):
    site, _user, _bought = pass_site
    at(2026, 10, 2)
    client.set_cookie("lang", "en")
    login(make_staff("operator_staff", operator_id=site.sheds[0].operator_id))
    page = client.get(f"/operator/{site.sheds[0].operator_id}/{site.id}/statements/2026-09")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="pass-revenue" data-fen="366"' in body and "Monthly pass revenue" in body


def test_the_operator_menu_links_the_pass_plans_of_each_site_it_serves(pass_site, make_site, client, login, make_staff):
    site, _user, _bought = pass_site
    other = make_site()  # a second compound with its own operator
    operator_id = site.sheds[0].operator_id
    plans_url = f"/operator/passes/{site.id}"

    login(make_staff("operator_staff", operator_id=operator_id))
    home = client.get("/operator/").get_data(as_text=True)
    assert f'data-testid="passes-link" href="{plans_url}"' in home
    assert f"/operator/passes/{other.id}" not in home
    statement_list = client.get(f"/operator/{operator_id}/{site.id}/statements").get_data(as_text=True)
    assert f'href="{plans_url}" data-testid="nav-passes"' in statement_list and "包月套餐" in statement_list
    plans = client.get(plans_url).get_data(as_text=True)
    assert 'data-testid="nav-passes" aria-current="page"' in plans and "月卡" in plans
    client.post("/logout")

    login(make_staff("admin"))
    home = client.get("/operator/").get_data(as_text=True)
    assert plans_url in home and f"/operator/passes/{other.id}" in home
    client.post("/logout")

    login(make_staff("operator_staff", operator_id=other.sheds[0].operator_id))
    assert plans_url not in client.get("/operator/").get_data(as_text=True)
    assert client.get(plans_url).status_code == 404
    assert client.post(plans_url, data={"stop_plan": "1"}).status_code == 404
    assert client.post(plans_url, data={"stop_plan": "1", "confirmed": "yes"}).status_code == 404
    client.post("/logout")

    login(make_staff("site_manager", site_id=site.id))  # sees the money, does not set plans
    assert "passes-link" not in client.get("/operator/").get_data(as_text=True)
    assert client.get(plans_url).status_code == 403


def test_stopping_a_plan_asks_once_more_and_keeps_passes_already_bought(pass_site, client, login, make_staff):
    site, _user, bought = pass_site
    plan = db.session.get(PassPlan, bought.plan_id)
    plans_url = f"/operator/passes/{site.id}"
    login(make_staff("operator_staff", operator_id=site.sheds[0].operator_id))
    asked = client.post(plans_url, data={"stop_plan": str(plan.id)})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'data-testid="stop-plan-confirm"' in page
    assert "确定停售这个套餐吗？" in page and "已购买的月卡在到期前仍然有效" in page
    db.session.refresh(plan)
    assert plan.active  # one tap on 停售 changes nothing
    done = client.post(plans_url, data={"stop_plan": str(plan.id), "confirmed": "yes"})
    assert done.status_code == 302
    db.session.refresh(plan)
    db.session.refresh(bought)
    assert not plan.active and bought.plan_id == plan.id
    assert "已停售" in client.get(plans_url).get_data(as_text=True)


def test_the_statement_command_writes_the_pass_line(pass_site, at, runner, tmp_path):
    site, _user, _bought = pass_site
    at(2026, 10, 2)
    out = tmp_path / "september.csv"
    args = ["statement", str(site.sheds[0].operator_id), str(site.id), "2026-09", "--format", "csv", "-o", str(out)]
    result = runner.invoke(args=[*args, "--lang", "en"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert ["Monthly pass revenue", "3.66"] in rows and ["Net revenue", "3.66"] in rows
    assert runner.invoke(args=[*args, "--lang", "zh_CN"]).exit_code == 0
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert ["包月收入", "3.66"] in rows


def test_the_worker_books_each_finished_day_from_deferred_to_earned_once(pass_site, at):
    from chargeshed.money.ledger import get_account
    from chargeshed.money.models import LedgerEntry, LedgerTxn
    from chargeshed.worker import passes_step

    site, user, bought = pass_site
    deferred = get_account(f"passes:deferred:site:{site.id}", "deferred")
    earned = get_account(f"passes:earned:site:{site.id}", "earned")
    assert passes_step(at(2026, 9, 20, 23)) == 0  # the first day is not over yet
    assert passes_step(at(2026, 10, 2, 9)) == 12  # 20 September – 1 October, one transaction a day
    assert passes_step(at(2026, 10, 2, 10)) == 0  # twice: nothing more
    assert (earned.balance_fen, deferred.balance_fen) == (PRICE * 12 // 30, PRICE - PRICE * 12 // 30)

    assert passes.refund(bought, at(2026, 10, 10, 15)) == 300  # only days not yet begun come back
    db.session.commit()
    assert deferred.balance_fen == 700 - 400  # 2–10 October: recognised, not booked until each is over
    assert passes_step(at(2026, 11, 2)) == 9
    assert (earned.balance_fen, deferred.balance_fen) == (700, 0)

    def booked_in(period):
        start, end = period.utc_bounds()
        return db.session.execute(
            select(func.sum(LedgerEntry.amount_fen))
            .join(LedgerTxn, LedgerTxn.id == LedgerEntry.txn_id)
            .where(LedgerEntry.account_id == earned.id, LedgerTxn.booked_at >= start, LedgerTxn.booked_at < end)
        ).scalar_one()

    # The books and the statements agree month by month.
    assert booked_in(SEPTEMBER) == _view(site, SEPTEMBER).figures["totals"]["pass_fen"] == 366
    assert booked_in(OCTOBER) == _view(site, OCTOBER).figures["totals"]["pass_fen"] == 334
    assert check_ledger() == []
