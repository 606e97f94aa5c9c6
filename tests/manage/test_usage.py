"""Usage: the sessions list (filters, pages, streamed CSV); charts and capacity from known charges."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from chargeshed.accounts.models import ROLE_OPERATOR_STAFF, ROLE_SITE_MANAGER
from chargeshed.charging import sessions as charging
from chargeshed.charging import usage
from chargeshed.extensions import db
from chargeshed.sites.models import Port, Shed

MONDAY = date(2026, 11, 16)  # a week before the fake clock's "now" (Friday 2026-11-20 18:00 local)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A local (UTC+8) wall-clock time as the naive UTC the database stores."""
    return datetime(day.year, day.month, day.day, hour, minute) - timedelta(hours=8)


def book(user, port: Port, begin: datetime, minutes: int, reason: str = charging.FULL, watts: int = 150):
    """A finished charge through the real services: hold, start, settle."""
    session = charging.start_session(user.id, port, now=begin)
    charging.mark_charging(session, begin)
    db.session.commit()
    session.tier_watts = session.watts = watts
    session.energy_wh = watts * minutes // 60
    charging.end_session(session, reason, begin + timedelta(minutes=minutes), stop_port=False)
    return session


def ports_of(shed_id: int) -> list[Port]:
    query = select(Port).where(Port.shed_id == shed_id).order_by(Port.number)
    return list(db.session.execute(query).scalars())


def shed_ids(*ids: int):
    return select(Shed.id).where(Shed.id.in_(ids))


def test_hour_of_week_heatmap_from_known_charges(app, make_site, make_resident):
    make_site(sheds=(4,))
    p = ports_of(1)
    resident = make_resident(balance_fen=5000)
    book(resident, p[0], local(MONDAY, 10), 120)  # Mon 10:00-12:00
    book(resident, p[1], local(MONDAY, 10, 30), 30)  # Mon 10:30-11:00
    book(resident, p[2], local(MONDAY + timedelta(days=2), 23, 30), 60)  # Wed 23:30 - Thu 00:30

    (week,) = usage.shed_usage(shed_ids(1), MONDAY, MONDAY + timedelta(days=6), datetime(2026, 11, 23))
    assert week.ports == 4
    assert week.percent(0, 10) == pytest.approx(37.5)  # 1.5 port-hours of 4 ports in one Monday 10:00 hour
    assert week.percent(0, 11) == pytest.approx(25.0)
    assert week.percent(2, 23) == pytest.approx(12.5)
    assert week.percent(3, 0) == pytest.approx(12.5)
    assert sum(week.percent(d, h) for d in range(7) for h in range(24)) == pytest.approx(87.5)
    assert (week.peak, week.full_seconds, week.busiest[:2]) == (2, 0, (0, 10))

    (fortnight,) = usage.shed_usage(
        shed_ids(1), MONDAY - timedelta(days=7), MONDAY + timedelta(days=6), datetime(2026, 11, 23)
    )
    assert fortnight.percent(0, 10) == pytest.approx(18.75)  # the same hour averaged over two Mondays


def test_daily_utilisation_energy_revenue_and_end_reasons(app, make_site, make_resident):
    make_site(sheds=(4,))
    p = ports_of(1)
    resident = make_resident(balance_fen=5000)
    book(resident, p[0], local(MONDAY, 10), 120, watts=150)  # 2 units at ¥0.25
    # Ends on Tuesday at 01:00: three started hours at ¥0.50.
    book(resident, p[1], local(MONDAY, 22), 180, watts=300, reason=charging.USER_STOP)
    failed = charging.start_session(resident.id, p[2], now=local(MONDAY, 9))
    charging.fail_session(failed, charging.START_FAILED, local(MONDAY, 9, 1))

    days = usage.daily(shed_ids(1), MONDAY, MONDAY + timedelta(days=1), datetime(2026, 11, 23))
    monday, tuesday = days
    assert (monday.busy_seconds, tuesday.busy_seconds) == (4 * 3600, 3600)
    assert monday.port_seconds == 4 * 86400
    assert monday.utilisation_pct == pytest.approx(100 * 4 / 96)
    assert (monday.energy_wh, tuesday.energy_wh) == (300, 900)
    assert (monday.revenue_fen, tuesday.revenue_fen) == (50, 150)
    shares = usage.end_reason_shares(shed_ids(1), MONDAY, MONDAY + timedelta(days=1))
    assert [(r, c) for r, c, _ in shares] == [("full", 1), ("start_failed", 1), ("user_stop", 1)]
    assert sum(pct for *_, pct in shares) == pytest.approx(100)


def test_capacity_hint_says_when_a_shed_needs_more_ports(app, make_site, make_resident):
    make_site(sheds=(2, 2))
    busy, quiet = ports_of(1), ports_of(2)
    residents = [make_resident(balance_fen=5000) for _ in range(3)]
    for n in range(7):
        day = MONDAY + timedelta(days=n)
        book(residents[0], busy[0], local(day, 19), 120)
        book(residents[1], busy[1], local(day, 19), 120)
        book(residents[2], quiet[0], local(day, 19), 60)
    sunday = MONDAY + timedelta(days=6)
    crowded, calm = usage.shed_usage(shed_ids(1, 2), MONDAY, sunday, datetime(2026, 11, 23))
    assert (crowded.peak, crowded.full_hours_per_week, crowded.hint) == (2, pytest.approx(14.0), "add_ports")
    assert (calm.peak, calm.full_hours_per_week, calm.hint) == (1, 0.0, "ok")


def test_usage_page_draws_svg_charts_for_a_range(client, make_site, make_resident, make_staff, login):
    site = make_site(sheds=(2,))
    p = ports_of(1)
    resident = make_resident(balance_fen=5000)
    for n in range(7):
        book(resident, p[0], local(MONDAY + timedelta(days=n), 19), 120)
        book(resident, p[1], local(MONDAY + timedelta(days=n), 19), 120)
    login(make_staff(ROLE_SITE_MANAGER, site=site))
    page = client.get("/manage/usage?date_from=2026-11-16&date_to=2026-11-22")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('data-testid="heatmap"') == 1 and html.count("<svg") >= 6
    assert 'data-hint="add_ports"' in html and "Needs more ports" in html
    assert "14 charges" in html and "¥7.00" in html  # 14 charges of 2 started hours at ¥0.25
    assert "<script" not in html.split("</header>", 1)[1]  # no chart library in the browser
    backwards = client.get("/manage/usage?date_from=2026-11-22&date_to=2026-11-16")
    assert backwards.status_code == 400
    assert "The end date is before the start date." in backwards.get_data(as_text=True)
    too_long = client.get("/manage/usage?date_from=2024-01-01&date_to=2026-11-16")
    assert too_long.status_code == 400 and "at most 366 days" in too_long.get_data(as_text=True)
    client.set_cookie("lang", "zh_CN")
    chinese = client.get("/manage/usage?date_from=2026-11-16&date_to=2026-11-22").get_data(as_text=True)
    # The revenue is what charges paid: monthly passes are sold, not charged per session, and say so.
    assert "充电收入 ¥7.00" in chinese and "每日充电收入" in chinese and "月卡收入见" in chinese


@pytest.fixture
def history(app, make_site, make_resident, monkeypatch):
    """24 charges on two sheds by two residents over three days; pages of 10."""
    import chargeshed.web.manage as manage_views

    monkeypatch.setattr(manage_views, "PAGE_SIZE", 10)
    make_site(sheds=(3, 3))
    alice = make_resident(balance_fen=9000, phone="13800001111")
    bob = make_resident(balance_fen=9000, phone="13900002222")
    ports = ports_of(1) + ports_of(2)
    for i in range(24):
        begin = local(MONDAY + timedelta(days=i // 8), 8) + timedelta(minutes=10 * (i % 8))
        book(
            alice if i % 2 == 0 else bob, ports[i % 6], begin, 5, reason=charging.FULL if i % 3 else charging.USER_STOP
        )
    return alice, bob


def session_ids(html: str) -> list[int]:
    import re

    return [int(x) for x in re.findall(r'data-session="(\d+)"', html)]


def test_sessions_list_filters_and_pages(client, history, make_staff, login):
    login(make_staff(ROLE_SITE_MANAGER, site=db.session.get(Shed, 1).site))
    first = client.get("/manage/sessions").get_data(as_text=True)
    assert "24 sessions" in first and session_ids(first) == list(range(24, 14, -1))
    assert session_ids(client.get("/manage/sessions?page=3").get_data(as_text=True)) == [4, 3, 2, 1]

    assert "4 sessions" in client.get("/manage/sessions?shed=2&port=1").get_data(as_text=True)
    alice = client.get("/manage/sessions?resident=1111").get_data(as_text=True)
    assert "12 sessions" in alice and "13900002222" not in alice
    tuesday = client.get("/manage/sessions?date_from=2026-11-17&date_to=2026-11-17").get_data(as_text=True)
    assert session_ids(tuesday) == list(range(16, 8, -1))
    stopped = client.get("/manage/sessions?reason=user_stop&page=1").get_data(as_text=True)
    assert "8 sessions" in stopped
    full = client.get("/manage/sessions?reason=full")
    page2 = full.get_data(as_text=True).split('class="pager"')[1]
    assert "16 sessions" in full.get_data(as_text=True) and "reason=full" in page2 and "page=2" in page2


@pytest.mark.parametrize(
    "query, message",
    [
        ("port=abc", "Not a valid integer value."),
        ("date_from=2026-13-40", "Not a valid date value."),
        ("date_from=2026-11-18&date_to=2026-11-17", "The end date is before the start date."),
        ("shed=999", "Not a valid choice."),
        ("reason=exploded", "Not a valid choice."),
    ],
)
def test_bad_filters_get_a_message_not_a_crash(client, make_site, make_staff, login, query, message):
    login(make_staff(ROLE_SITE_MANAGER, site=make_site()))
    response = client.get(f"/manage/sessions?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert client.get(f"/manage/sessions.csv?{query}").status_code == 400


def test_csv_export_streams_the_filtered_sessions(client, history, make_staff, login):
    login(make_staff(ROLE_SITE_MANAGER, site=db.session.get(Shed, 1).site))
    response = client.get("/manage/sessions.csv?shed=1")
    assert response.is_streamed and response.mimetype == "text/csv"
    assert "Content-Length" not in response.headers  # sent as it is read, never held whole in memory
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 12 and {r["Shed"] for r in rows} == {"1号车棚"}
    last = rows[-1]
    assert (last["Session no."], last["Started"], last["Port no."], last["Resident"]) == (
        "1",
        "2026-11-16 08:00:00",
        "1",
        "13800001111",
    )
    assert (last["State"], last["End reason"], last["Energy (Wh)"], last["Cost (fen)"], last["Cost (yuan)"]) == (
        "Ended",
        "Stopped by the resident",
        "12",
        "25",
        "0.25",
    )


def test_operator_staff_see_residents_phone_numbers_masked(client, history, make_staff, login):
    shed = db.session.get(Shed, 1)
    login(make_staff(ROLE_OPERATOR_STAFF, operator_id=shed.operator_id))
    page = client.get("/manage/sessions").get_data(as_text=True)
    assert "138****1111" in page and "13800001111" not in page
    text = client.get("/manage/sessions.csv").get_data(as_text=True)
    assert "138****1111" in text and "13800001111" not in text


def test_lists_and_exports_never_show_another_tenants_sessions(client, tenants, sign_in):
    a, b, _admin, resident = tenants
    book(resident, b.ports[0], local(MONDAY, 9), 30)
    book(resident, a.ports[0], local(MONDAY, 9), 30)
    for role in (ROLE_SITE_MANAGER, ROLE_OPERATOR_STAFF):
        sign_in(a.users[role])
        page = client.get("/manage/sessions").get_data(as_text=True)
        assert "1 session" in page and "B-only shed 7Q" not in page
        assert "B-only shed 7Q" not in client.get("/manage/sessions.csv").get_data(as_text=True)
        assert "B-only shed 7Q" not in client.get("/manage/usage").get_data(as_text=True)
        assert client.get(f"/manage/sessions?shed={b.shed.id}").status_code == 400
