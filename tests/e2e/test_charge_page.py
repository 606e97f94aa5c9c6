"""The charge page on a phone, in Chinese: an occupied port asks first, the tier shows from the first
reading, 充满待取车 appears when the charge is judged full, and the page tells a resident who kept it open."""

from __future__ import annotations

import os
import re

import pytest

from chargeshed.extensions import db
from chargeshed.ports.driver import FINISHING
from chargeshed.ports.sim import Bike
from chargeshed.sites.models import Port

pytestmark = pytest.mark.browser

POLL_WAIT_MS = 12_000


def shots_dir(tmp_path) -> str:
    """Where screenshots go: $CHARGESHED_SHOTS to look at them, else the test's temporary folder."""
    path = os.environ.get("CHARGESHED_SHOTS") or str(tmp_path)
    os.makedirs(path, exist_ok=True)
    return path


def sign_in(page, base: str, login: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("手机号").fill(login)
    page.get_by_label("密码").fill("secret-pass")
    page.get_by_role("button", name="登录").click()


def test_occupied_port_tier_from_first_reading_and_full_waiting_for_pickup(
    live_server, phone, make_site, make_resident, driver, clock, tick, tmp_path
):
    from playwright.sync_api import expect

    page, problems = phone
    shots = shots_dir(tmp_path)
    make_site()
    login = make_resident(balance_fen=1000).login
    port = db.session.query(Port).filter_by(code="T11001").one()
    port.ocpp_state = FINISHING  # a neighbour's finished charge, bike still plugged in
    db.session.commit()
    db.session.remove()
    sign_in(page, live_server, login)

    page.goto(f"{live_server}/p/T11001")
    expect(page.get_by_test_id("port-state")).to_have_text("占用中（车辆仍插着）")
    expect(page.get_by_test_id("occupied-warning")).to_contain_text("这个插座上还插着一辆车")
    page.screenshot(path=os.path.join(shots, "port-occupied.png"), full_page=True)
    page.get_by_test_id("plug-confirm").check()
    driver.plug("T11001", bike=Bike("lithium", cc_watts=219, cc_minutes=6, taper_minutes=2))
    page.get_by_test_id("start").click()
    expect(page).to_have_url(re.compile(rf"{live_server}/s/\d+$"))

    tick()
    clock.advance(minutes=2)
    tick()
    tier = page.get_by_test_id("tier")
    expect(tier).to_contain_text("计费档位：200–400 W，每 60 分钟 ¥0.50", timeout=POLL_WAIT_MS)
    expect(tier).to_contain_text("按充电器当前功率（219 W）确定")
    expect(page.get_by_test_id("limit")).to_contain_text("最多可充 6 小时")
    page.screenshot(path=os.path.join(shots, "session-first-reading.png"), full_page=True)

    for _minute in range(12):  # the taper falls under 10 W
        clock.advance(minutes=1)
        tick()
    expect(page.get_by_test_id("full-soon")).to_be_visible(timeout=POLL_WAIT_MS)
    expect(page.get_by_test_id("session-state")).to_have_text("即将充满")
    page.screenshot(path=os.path.join(shots, "session-almost-full.png"), full_page=True)

    clock.advance(minutes=10)
    tick()
    expect(page.get_by_test_id("session-state")).to_have_text("充满待取车", timeout=POLL_WAIT_MS)
    expect(page.get_by_test_id("end-reason")).to_have_text("已充满")
    expect(page.locator("progress")).to_have_count(0)
    page.screenshot(path=os.path.join(shots, "session-full.png"), full_page=True)
    assert problems.messages == []


def test_a_charge_that_ends_while_the_page_is_open_changes_the_title_vibrates_and_shows_a_banner(
    live_server, phone, make_site, make_resident, driver, clock, tick, tmp_path
):
    from playwright.sync_api import expect

    from chargeshed.charging import port_admin as admin

    page, problems = phone
    page.add_init_script("window.__vibrated = [];navigator.vibrate = p => { window.__vibrated.push(p); return true; };")
    make_site()
    login = make_resident(balance_fen=1000).login
    driver.plug("T11001", bike=Bike("lithium", cc_watts=250, cc_minutes=600, taper_minutes=30))
    db.session.remove()
    sign_in(page, live_server, login)
    page.goto(f"{live_server}/p/T11001")
    page.get_by_test_id("start").click()
    tick()
    expect(page.get_by_test_id("session-state")).to_have_text("充电中", timeout=POLL_WAIT_MS)
    expect(page.get_by_test_id("ended-banner")).to_be_hidden()

    clock.advance(minutes=30)
    tick()
    admin.staff_stop(db.session.query(Port).filter_by(code="T11001").one(), "manager", "线路检修", clock.now)
    db.session.commit()  # as the staff request does
    db.session.remove()
    banner = page.get_by_test_id("ended-banner")
    expect(banner).to_be_visible(timeout=POLL_WAIT_MS)
    expect(banner).to_have_text("充电已结束：工作人员已停止")
    expect(page).to_have_title("充电已结束：工作人员已停止")
    expect(page.get_by_test_id("end-note")).to_have_text("工作人员说明：线路检修")
    assert page.evaluate("window.__vibrated.length") == 1
    page.screenshot(path=os.path.join(shots_dir(tmp_path), "session-ended-banner.png"), full_page=True)
    assert problems.messages == []
