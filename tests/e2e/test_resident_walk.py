"""A resident's first charge on a phone, in Chinese: scan, sign up, top up, charge, stop, see the change."""

from __future__ import annotations

import re

import pytest

from chargeshed.extensions import db
from chargeshed.money.format import format_fen
from chargeshed.money.ledger import check_ledger, wallet_balance
from chargeshed.ports.sim import Bike

pytestmark = pytest.mark.browser

# The live fragment polls every 5 s; allow two polls and some slack.
POLL_WAIT_MS = 12_000


def test_first_charge_from_scan_to_change_in_the_wallet(live_server, phone, make_site, driver, clock, tick):
    from playwright.sync_api import expect

    page, problems = phone
    make_site()
    code = "T11001"
    driver.plug(code, bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))

    # The scan: the port is identified large and is free; the page is in Chinese.
    page.goto(f"{live_server}/p/{code}")
    expect(page.locator("h1.shed")).to_have_text("1号车棚")
    expect(page.get_by_test_id("port-state")).to_have_attribute("data-state", "free")
    expect(page.get_by_test_id("port-state")).to_have_text("空闲")
    expect(page.locator("html")).to_contain_text("收费标准")

    # Sign up from the port page and come back to it.
    page.get_by_role("link", name="注册账号").click()
    page.get_by_label("手机号").fill("138 0000 1234")
    page.get_by_label("密码", exact=True).fill("long-enough")
    page.get_by_label("确认密码").fill("long-enough")
    page.get_by_label("楼栋").fill("4")
    page.get_by_label("单元").fill("2")
    page.get_by_role("button", name="注册").click()
    expect(page).to_have_url(f"{live_server}/p/{code}")
    expect(page.locator(".flash-ok")).to_have_text("欢迎！账号已开通。")
    expect(page.get_by_test_id("wallet-balance")).to_have_text("¥0.00")

    # Top up ¥10 and start: the demo checkout, then straight to the charge.
    top_up = page.get_by_test_id("topup-start")
    expect(top_up).to_have_text("充值 ¥10.00 并开始充电")
    top_up.click()
    expect(page.locator("h1")).to_have_text("演示支付")
    page.get_by_test_id("demo-pay").click()
    expect(page).to_have_url(re.compile(rf"{live_server}/s/\d+$"))
    state = page.get_by_test_id("session-state")
    expect(state).to_have_attribute("data-state", "pending")
    expect(state).to_have_text("正在启动…")

    # The unit confirms on the next supervisor round; the page's polling shows it.
    assert tick().confirmed == 1
    expect(state).to_have_attribute("data-state", "charging", timeout=POLL_WAIT_MS)
    expect(state).to_have_text("充电中")

    clock.advance(minutes=90)
    tick()
    cost = page.get_by_test_id("session-cost")
    expect(cost).not_to_have_attribute("data-fen", "0", timeout=POLL_WAIT_MS)
    expect(page.locator("#session-live")).to_contain_text("250 W")

    # Stop: pay for what was used, the rest of the ¥10 stays in the wallet.
    page.get_by_test_id("stop").click()
    page.get_by_test_id("stop-confirm").click()  # asked first: one tap does not end a charge
    expect(state).to_have_attribute("data-state", "ended")
    expect(page.get_by_test_id("end-reason")).to_have_text("您已手动停止")
    cost_fen = int(cost.get_attribute("data-fen"))
    assert 0 < cost_fen <= 300
    expect(cost).to_have_text(format_fen(cost_fen))
    expect(page.get_by_test_id("wallet-balance")).to_have_text(format_fen(1000 - cost_fen))

    page.get_by_role("link", name="钱包").click()
    expect(page.get_by_test_id("wallet-balance")).to_have_text(format_fen(1000 - cost_fen))
    expect(page.locator("main")).to_contain_text("充值")

    db.session.remove()
    from chargeshed.accounts.models import User

    resident = db.session.query(User).filter_by(login="13800001234").one()
    assert wallet_balance(resident.id) == 1000 - cost_fen
    assert check_ledger() == []
    assert problems.messages == []
