"""钱包明细 on a phone: the live hold and every movement with its balance; a withdrawal asks first."""

from __future__ import annotations

import os

import pytest

from chargeshed.charging import sessions as charging
from chargeshed.extensions import db
from chargeshed.sites.models import Port
from tests.e2e.test_charge_page import shots_dir, sign_in

pytestmark = pytest.mark.browser


def test_statement_shows_the_live_hold_and_the_cash_out_is_confirmed(
    live_server, phone, make_site, make_resident, tmp_path
):
    from playwright.sync_api import expect

    page, problems = phone
    shots = shots_dir(tmp_path)
    make_site()
    user = make_resident(balance_fen=2000)
    login, user_id = user.login, user.id
    charging.start_session(user_id, db.session.query(Port).filter_by(code="T11001").one())
    db.session.commit()
    db.session.remove()
    sign_in(page, live_server, login)

    page.goto(f"{live_server}/wallet")
    page.get_by_test_id("statement-link").click()
    rows = page.get_by_test_id("statement").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("充电预付（冻结）")
    expect(rows.nth(0).get_by_test_id("hold-live")).to_be_visible()
    expect(rows.nth(0).get_by_test_id("running")).to_have_text("¥17.00")
    expect(rows.nth(1).get_by_test_id("running")).to_have_text("¥20.00")
    page.screenshot(path=os.path.join(shots, "wallet-statement.png"), full_page=True)

    page.goto(f"{live_server}/wallet/cashout")
    page.get_by_label("提现金额").fill("5")
    page.get_by_test_id("cashout-submit").click()
    expect(page.locator("h1")).to_have_text("确定提现 ¥5.00 吗？")
    page.screenshot(path=os.path.join(shots, "cashout-confirm.png"), full_page=True)
    page.get_by_test_id("cashout-confirm").click()
    page.goto(f"{live_server}/wallet/statement")
    expect(rows.nth(0)).to_contain_text("提现")
    expect(rows.nth(0).get_by_test_id("running")).to_have_text("¥12.00")
    assert problems.messages == []
