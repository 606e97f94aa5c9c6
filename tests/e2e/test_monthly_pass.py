"""Buying and using a 包月 pass on a phone: the tariff explains it, the wallet pays, the charge is free."""

from __future__ import annotations

import os
import re

import pytest

from chargeshed.extensions import db
from chargeshed.passes.models import PassPlan
from chargeshed.ports.sim import Bike
from tests.e2e.test_charge_page import POLL_WAIT_MS, shots_dir, sign_in

pytestmark = pytest.mark.browser


def test_buy_a_pass_and_charge_on_it(live_server, phone, make_site, make_resident, driver, clock, tick, tmp_path):
    from playwright.sync_api import expect

    page, problems = phone
    shots = shots_dir(tmp_path)
    site = make_site()
    db.session.add(
        PassPlan(
            site_id=site.id,
            name="30天月卡",
            price_fen=1500,
            days=30,
            charges_per_day=2,
            hours_per_charge=8,
            max_watts=400,
        )
    )
    db.session.commit()
    login = make_resident(balance_fen=2000).login
    db.session.remove()
    sign_in(page, live_server, login)

    page.goto(f"{live_server}/p/T11001")
    page.get_by_test_id("pass-info").click()  # the tariff explains the pass
    expect(page.get_by_test_id("pass-plan")).to_contain_text("30天月卡：¥15.00 / 30 天")
    page.screenshot(path=os.path.join(shots, "pass-plans-public.png"), full_page=True)
    page.get_by_role("link", name="购买或管理包月").click()
    page.get_by_test_id("plan-buy").click()
    expect(page.locator("h1")).to_have_text("确定购买“30天月卡”吗？")
    page.screenshot(path=os.path.join(shots, "pass-buy.png"), full_page=True)
    page.get_by_test_id("pass-confirm").click()
    expect(page.locator(".flash-ok")).to_contain_text("包月已购买")
    expect(page.get_by_test_id("wallet-balance")).to_have_text("¥5.00")
    page.screenshot(path=os.path.join(shots, "passes.png"), full_page=True)

    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    page.goto(f"{live_server}/p/T11001")
    page.get_by_test_id("pass-link").click()
    page.screenshot(path=os.path.join(shots, "port-with-pass.png"), full_page=True)
    page.get_by_test_id("start-pass").click()
    expect(page).to_have_url(re.compile(rf"{live_server}/s/\d+$"))
    tick()
    clock.advance(minutes=60)
    tick()
    expect(page.get_by_test_id("on-pass")).to_contain_text("包月充电", timeout=POLL_WAIT_MS)
    expect(page.get_by_test_id("session-cost")).to_have_attribute("data-fen", "0")
    page.screenshot(path=os.path.join(shots, "session-on-pass.png"), full_page=True)
    page.get_by_test_id("stop").click()
    page.get_by_test_id("stop-confirm").click()
    expect(page.get_by_test_id("end-reason")).to_have_text("您已手动停止")
    expect(page.get_by_test_id("wallet-balance")).to_have_text("¥5.00")
    assert problems.messages == []
