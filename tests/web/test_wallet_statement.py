"""钱包明细: every top-up, hold, charge, returned hold, goodwill refund and cash-out with a running balance."""

from __future__ import annotations

import re

from sqlalchemy import select

from chargeshed.accounts.models import ROLE_OPERATOR_STAFF
from chargeshed.accounts.services import create_user
from chargeshed.charging import sessions as charging
from chargeshed.charging.models import ChargeSession
from chargeshed.extensions import db
from chargeshed.payments import refunds
from chargeshed.payments.providers import provider_from_config
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port


def _rows(page: str) -> list[tuple[str, str, str]]:
    """(kind, amount, running balance) per statement row, newest first."""
    return re.findall(
        r'<tr data-kind="(\w+)">.*?<td class="num[^"]*">([^<]+)</td>\s*'
        r'<td class="num" data-testid="running">([^<]+)</td>',
        page,
        re.S,
    )


def test_the_statement_lists_every_movement_with_the_balance_after_it(
    app, client, make_site, make_resident, login, driver, clock, tick
):
    make_site()
    user = login(make_resident(balance_fen=2000))
    port = db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    charging.start_session(user.id, port)
    tick()

    live = client.get("/wallet/statement").get_data(as_text=True)
    assert _rows(live) == [("hold", "−¥3.00", "¥17.00"), ("topup", "+¥20.00", "¥20.00")]
    assert 'data-testid="hold-live"' in live and "充电进行中" in live

    clock.advance(minutes=90)
    tick()
    session = db.session.execute(select(ChargeSession)).scalar_one()
    charging.end_session(session, charging.USER_STOP)
    staff = create_user("op", "secret-pass", ROLE_OPERATOR_STAFF)
    refunds.refund_session(staff.id, session, 50, "插座故障导致多计费")
    refunds.request_cashout(user.id, 500, provider_from_config(app.config))

    page = client.get("/wallet/statement").get_data(as_text=True)
    assert _rows(page) == [
        ("cashout", "−¥5.00", "¥14.50"),
        ("session_refund", "+¥0.50", "¥19.50"),
        ("settle", "+¥2.00", "¥19.00"),
        ("hold", "−¥3.00", "¥17.00"),
        ("topup", "+¥20.00", "¥20.00"),
    ]
    assert "本次充电费用 ¥1.00（预付 ¥3.00）" in page and "原因：插座故障导致多计费" in page
    assert 'data-testid="hold-live"' not in page

    session_page = client.get(f"/s/{session.id}").get_data(as_text=True)
    assert "运营方事后退款 ¥0.50" in session_page and "插座故障导致多计费" in session_page
    assert "已退款 ¥0.50" in client.get("/history").get_data(as_text=True)
    assert 'data-testid="statement-link"' in client.get("/wallet").get_data(as_text=True)


def test_a_new_resident_sees_an_empty_statement(app, client, make_resident, login):
    login(make_resident())
    page = client.get("/wallet/statement")
    assert page.status_code == 200 and "暂无明细" in page.get_data(as_text=True)
