"""The resident's charge on a phone, in Chinese, on a port wired to a real OCPP 1.6J conversation: the
running gateway and a station built on the ocpp library's client side, over real sockets."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports import registry, telemetry
from chargeshed.sites.models import Port
from tests.ports.ocpp_gateway import RunningGateway
from tests.ports.ocpp_station import StationThread

pytestmark = pytest.mark.browser

POLL_WAIT_MS = 12_000


def test_resident_charges_on_an_ocpp_station_port(live_server, phone, make_site, make_resident, app, clock, tmp_path):
    from playwright.sync_api import expect

    from chargeshed.charging.supervisor import tick

    def tick_now():
        with app.app_context():
            tick(clock.now)

    page, problems = phone
    make_site()
    port = db.session.execute(select(Port).where(Port.code == "T11001")).scalar_one()
    key = registry.add_charger("SHED1-CP", 2).key
    telemetry.bind(port, "ocpp:SHED1-CP/1")
    db.session.commit()
    resident = make_resident(balance_fen=1000, phone="13800007777")

    with RunningGateway(app, clock) as gateway, StationThread(gateway.port, "SHED1-CP", key, clock) as station:

        async def boot(s):
            await s.boot()
            await s.status(0, "Available")
            await s.status(1, "Preparing")  # the bike is plugged in
            await gateway.flush()

        station.do(boot)
        tick_now()

        page.goto(f"{live_server}/login?next=/p/T11001")
        page.locator("input[name=login]").fill(resident.login)
        page.locator("input[name=password]").fill("secret-pass")
        page.locator("input[name=password]").press("Enter")
        page.goto(f"{live_server}/p/T11001")
        expect(page.locator("h1.shed")).to_have_text("1号车棚")
        expect(page.get_by_test_id("wallet-balance")).to_have_text("¥10.00")

        page.get_by_test_id("start").click()
        expect(page).to_have_url(re.compile(rf"{live_server}/s/\d+$"))
        session_ref = "S" + page.url.rsplit("/", 1)[-1]
        state = page.get_by_test_id("session-state")
        expect(state).to_have_attribute("data-state", "pending")

        async def start(s):
            asked = await s.next_asked("RemoteStartTransaction")
            assert asked == {"id_tag": session_ref, "connector_id": 1}
            await s.status(1, "Charging")
            started = await s.start_transaction(1, session_ref, 52_000)
            await gateway.flush()
            return started.transaction_id

        transaction = station.do(start)
        tick_now()
        expect(state).to_have_attribute("data-state", "charging", timeout=POLL_WAIT_MS)
        expect(state).to_have_text("充电中")

        for minute in range(1, 31):
            clock.advance(minutes=1)

            async def meter(s, minute=minute):
                await s.meter(1, transaction, wh=52_000 + 4 * minute, w=240)
                await gateway.flush()

            station.do(meter)
            if minute % 5 == 0:
                tick_now()
        expect(page.locator("#session-live")).to_contain_text("240 W", timeout=POLL_WAIT_MS)
        page.screenshot(path=str(tmp_path / "ocpp-charging.png"), full_page=True)

        page.get_by_test_id("stop").click()
        page.get_by_test_id("stop-confirm").click()  # the resident is asked before a charge ends
        expect(state).to_have_attribute("data-state", "ended")
        expect(page.get_by_test_id("end-reason")).to_have_text("您已手动停止")

        async def stopped(s):
            assert await s.next_asked("RemoteStopTransaction") == {"transaction_id": transaction}
            await s.stop_transaction(transaction, 52_120, "Remote")
            await s.status(1, "Finishing")
            await gateway.flush()

        station.do(stopped)
        cost = page.get_by_test_id("session-cost")
        cost_fen = int(cost.get_attribute("data-fen"))
        assert cost_fen == 50  # 240 W → the 200–400 W tier, one started hour
        expect(cost).to_have_text(format_fen(cost_fen))
        expect(page.get_by_test_id("wallet-balance")).to_have_text(format_fen(1000 - cost_fen))
        page.screenshot(path=str(tmp_path / "ocpp-ended.png"), full_page=True)

    db.session.remove()
    assert wallet_balance(resident.id) == 1000 - cost_fen
    assert check_ledger() == []
    assert problems.messages == []
