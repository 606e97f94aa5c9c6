"""A resident charges on a port wired to a Shelly Pro 4PM channel, on a phone, in Chinese.

Real peers all the way: Chromium, the app on a socket, the gateway with its MQTT adapters on the
real Mosquitto, an emulated Shelly device on the broker, the telemetry store, the supervisor.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from chargeshed.charging.supervisor import tick
from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.money.ledger import check_ledger
from chargeshed.ports import shelly, telemetry
from chargeshed.ports.models import DONE, PortCommand, PortTelemetry
from chargeshed.sites.models import Port
from tests.ports.emulators.base import unique, wait_for
from tests.ports.emulators.shelly import ShellyEmulator
from tests.ports.gateway_runner import GatewayRunner

pytestmark = pytest.mark.browser

POLL_WAIT_MS = 12_000


def _stored(port_id: int) -> PortTelemetry:
    db.session.expire_all()
    return db.session.get(PortTelemetry, port_id)


def _commands_done(port_id: int) -> bool:
    db.session.expire_all()
    statuses = db.session.execute(select(PortCommand.status).where(PortCommand.port_id == port_id)).scalars().all()
    return bool(statuses) and all(status == DONE for status in statuses)


@pytest.fixture
def shelly_device():
    device = ShellyEmulator(unique("shellypro4pm")).connect()
    yield device
    device.close()


@pytest.fixture
def gateway(app, clock, shelly_device):
    runner = GatewayRunner(app, clock)
    yield runner
    runner.stop()


def test_a_charge_on_a_shelly_channel_from_scan_to_full(
    live_server, phone, make_site, clock, shelly_device, tmp_path, request
):
    from playwright.sync_api import expect

    page, problems = phone
    make_site()
    port = db.session.execute(select(Port).where(Port.code == "T11002")).scalar_one()
    telemetry.bind(port, shelly.target(shelly_device.prefix, 1))
    db.session.commit()
    gateway = request.getfixturevalue("gateway")
    wait_for(lambda: _stored(port.id).link_online and _stored(port.id).state == "Available", what="the channel")
    tick(clock.now)

    page.goto(f"{live_server}/p/{port.code}")
    expect(page.get_by_test_id("port-state")).to_have_text("空闲")
    page.get_by_role("link", name="注册账号").click()
    page.get_by_label("手机号").fill("138 0000 5678")
    page.get_by_label("密码", exact=True).fill("long-enough")
    page.get_by_label("确认密码").fill("long-enough")
    page.get_by_label("楼栋").fill("10")
    page.get_by_label("单元").fill("1")
    page.get_by_role("button", name="注册").click()
    expect(page).to_have_url(f"{live_server}/p/{port.code}")
    page.get_by_test_id("topup-start").click()
    page.get_by_test_id("demo-pay").click()
    expect(page).to_have_url(re.compile(rf"{live_server}/s/\d+$"))
    state = page.get_by_test_id("session-state")

    # The gateway switches the channel on with the paid time as its own cap; the page follows.
    wait_for(lambda: _commands_done(port.id), what="Switch.Set acknowledged")
    assert shelly_device.calls()[-1]["params"]["toggle_after"] > 0
    shelly_device.plug(1, 250.0)
    gateway.flush()
    assert tick(clock.now).confirmed == 1
    expect(state).to_have_text("充电中", timeout=POLL_WAIT_MS)

    for _ in range(18):  # 90 minutes at 250 W, reported by the device every 5 minutes
        clock.advance(minutes=5)
        shelly_device.advance(300)
        wait_for(lambda: _stored(port.id).reading_at == clock.now, what="the report stored")
        tick(clock.now)
    expect(page.locator("#session-live")).to_contain_text("250 W", timeout=POLL_WAIT_MS)
    page.screenshot(path=str(tmp_path / "shelly-charging.png"), full_page=True)

    shelly_device.plug(1, 2.5)  # the charger tapers off: full after 10 minutes below the threshold
    for _ in range(6):
        clock.advance(minutes=5)
        shelly_device.advance(300)
        wait_for(lambda: _stored(port.id).reading_at == clock.now, what="the report stored")
        tick(clock.now)
    expect(state).to_have_attribute("data-state", "ended", timeout=POLL_WAIT_MS)
    expect(page.get_by_test_id("end-reason")).to_have_text("已充满")
    wait_for(lambda: _commands_done(port.id) and not shelly_device.switches[1].output, what="the relay opened")
    cost = page.get_by_test_id("session-cost")
    cost_fen = int(cost.get_attribute("data-fen"))
    assert 0 < cost_fen <= 1000
    expect(page.get_by_test_id("wallet-balance")).to_have_text(format_fen(1000 - cost_fen))
    page.screenshot(path=str(tmp_path / "shelly-full.png"), full_page=True)
    assert check_ledger() == []
    assert problems.messages == []
